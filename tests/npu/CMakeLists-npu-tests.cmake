# tests/npu/CMakeLists-npu-tests.cmake — the NPU simulator's value and timing-structure tests
# (GTest) and the model-level NPU-vs-CPU checks. Included from tests/CMakeLists.txt.
find_package(GTest REQUIRED)

add_executable(test_npu_sim
  ${CMAKE_CURRENT_LIST_DIR}/test_npu_elementwise.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_npu_gemm.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_npu_timing.cpp)
target_include_directories(test_npu_sim PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(test_npu_sim PRIVATE opennpu_runtime opennpu_npu opennpu_cpu GTest::gtest GTest::gtest_main)
# The references are written operation by operation: no fused multiply-add contraction.
target_compile_options(test_npu_sim PRIVATE -ffp-contract=off)
target_compile_definitions(test_npu_sim PRIVATE OPENNPU_TEST_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_test(NAME npu_sim_values COMMAND test_npu_sim --gtest_filter=NpuElementwise.*:NpuLut.*:NpuGemm.*)
add_test(NAME npu_sim_timing COMMAND test_npu_sim --gtest_filter=NpuTiming.*)
set_tests_properties(npu_sim_values npu_sim_timing PROPERTIES LABELS npu TIMEOUT 1200)

# Model level: `opennpu run --hw PRESET` vs `opennpu run` (CPU fp32) and `opennpu plan --json`,
# one ctest per model so they run in parallel. Exit 77 = skip (models/ not exported).
foreach(_m IN ITEMS small_cnn mobilenet_v2 resnet50 bert_base lstm)
  add_test(NAME npu_model_${_m}
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/models_npu.py $<TARGET_FILE:opennpu> ${CMAKE_SOURCE_DIR}/models ${_m})
  set_tests_properties(npu_model_${_m} PROPERTIES LABELS "npu;models" SKIP_RETURN_CODE 77 TIMEOUT 1800)
endforeach()

# INT8 (W8A8): per-op quantized models and the quantized resnet50/mobilenet_v2, NPU vs CPU bit for bit.
add_test(NAME npu_int8_ops COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/test_npu_int8.py $<TARGET_FILE:opennpu> ops)
add_test(NAME npu_int8_models
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/test_npu_int8.py $<TARGET_FILE:opennpu> models ${CMAKE_SOURCE_DIR}/models)
set_tests_properties(npu_int8_ops npu_int8_models PROPERTIES LABELS "npu;int8" SKIP_RETURN_CODE 77 TIMEOUT 1800)
