# tests/unit/CMakeLists-core.cmake — core unit tests (GTest), real-model tests and bad-input tests.
# Included from tests/CMakeLists.txt, so CMAKE_CURRENT_SOURCE_DIR is tests/.
find_package(GTest REQUIRED)

add_executable(test_core
  unit/test_core_half.cpp
  unit/test_core_npy.cpp
  unit/test_core_tensor.cpp
  unit/test_core_ir.cpp
  unit/test_core_passes.cpp
)
target_link_libraries(test_core PRIVATE opennpu_passes opennpu_cpu GTest::gtest GTest::gtest_main)
add_test(NAME unit_core COMMAND test_core --gtest_brief=1)
set_tests_properties(unit_core PROPERTIES LABELS unit TIMEOUT 600)

# Real models: exported by scripts/export_models.py into models/ (git-ignored). Exit 77 = skip
# when they are missing (scripts/test.sh always exports them first).
set(_models_dir ${CMAKE_SOURCE_DIR}/models)
foreach(_m IN ITEMS small_cnn:input:120 lstm:x:300 mobilenet_v2:input:600 resnet50:input:1200 bert_base:input_ids:1200)
  string(REPLACE ":" ";" _parts ${_m})
  list(GET _parts 0 _name)
  list(GET _parts 1 _input)
  list(GET _parts 2 _timeout)
  add_test(NAME model_${_name}
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/models/run_model.sh $<TARGET_FILE:opennpu> ${_models_dir} ${_name} ${_input})
  set_tests_properties(model_${_name} PROPERTIES LABELS models SKIP_RETURN_CODE 77 TIMEOUT ${_timeout})
endforeach()

# Cross-check with ONNX Runtime through the shared harness (../shared/tools/ort next to the checkout).
add_test(NAME model_small_cnn_vs_ort
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/models/vs_ort.sh $<TARGET_FILE:opennpu> ${CMAKE_SOURCE_DIR}/../shared/tools/ort
          ${_models_dir} small_cnn input)
set_tests_properties(model_small_cnn_vs_ort PROPERTIES LABELS models SKIP_RETURN_CODE 77 TIMEOUT 300)

# Bad inputs: generated at test time into a temp dir; every case must fail cleanly with exit 1.
add_test(NAME badinput
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/badinput/run_cases.py $<TARGET_FILE:opennpu>)
set_tests_properties(badinput PROPERTIES LABELS badinput TIMEOUT 600)
