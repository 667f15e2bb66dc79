// Placeholder: kernels of this group are not written yet (registers nothing).
#include "cpu/kernel.h"
namespace opennpu::cpu {
void register_misc(Registry&) {}
}  // namespace opennpu::cpu
