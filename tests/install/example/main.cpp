// Loads the ONNX model named on the command line, predicts once on zero inputs and prints each
// output's name and shape: the smallest program an installed opennpu must build and run.
#include <cstdio>
#include <exception>

#include <opennpu/runtime.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s model.onnx\n", argv[0]);
    return 2;
  }
  try {
    auto model = opennpu::Model::load(argv[1]);
    opennpu::NamedTensors inputs;
    for (const auto& in : model.inputs()) {
      opennpu::Shape shape = in.shape;
      for (auto& d : shape)
        if (d < 0) d = 1;  // symbolic dims: bind to 1
      inputs[in.name] = opennpu::Tensor(in.dtype, shape);  // zero-initialised
    }
    for (const auto& [name, t] : model.predict(inputs))
      std::printf("%s %s %s\n", name.c_str(), std::string(opennpu::dtype_name(t.dtype())).c_str(),
                  opennpu::shape_str(t.shape()).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
