# NPU unit tests: hardware descriptions and the single-GEMM simulators. Included from
# tests/CMakeLists.txt.
find_package(GTest REQUIRED)

add_executable(test_npu
  ${CMAKE_CURRENT_LIST_DIR}/test_hw.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_gemm_sim.cpp)
target_link_libraries(test_npu PRIVATE opennpu_npu GTest::gtest GTest::gtest_main)
target_compile_definitions(test_npu PRIVATE OPENNPU_TEST_HW_DIR="${CMAKE_SOURCE_DIR}/hw")
add_test(NAME npu_unit COMMAND test_npu)
set_tests_properties(npu_unit PROPERTIES TIMEOUT 300)

# The CLI: each command with --json must print one JSON object and succeed.
add_test(NAME npu_cli_hw_list COMMAND opennpu hw list --json)
add_test(NAME npu_cli_hw_show COMMAND opennpu hw show ane_m1 --json)
add_test(NAME npu_cli_sim_gemm COMMAND opennpu sim gemm --hw systolic_32x32 --m 70 --k 45 --n 33 --dataflow os --json)
set_tests_properties(npu_cli_sim_gemm PROPERTIES PASS_REGULAR_EXPRESSION "\"result_ok\": true")
