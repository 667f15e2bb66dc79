// NPU commands (hw, sim). Not written yet.
#include "tools/commands.h"

void add_npu_commands(CLI::App&) {}
