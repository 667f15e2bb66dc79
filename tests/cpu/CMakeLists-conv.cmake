# tests/cpu/CMakeLists-conv.cmake — fast oneDNN conv/pooling kernels and the conv passes vs the reference kernels (GTest).
find_package(GTest REQUIRED)
add_executable(test_fast_conv cpu/test_fast_conv.cpp)
target_include_directories(test_fast_conv PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(test_fast_conv PRIVATE opennpu_cpu GTest::gtest GTest::gtest_main)
add_test(NAME fast_conv COMMAND test_fast_conv --gtest_brief=1)
set_tests_properties(fast_conv PROPERTIES LABELS unit TIMEOUT 600)
# The same with the Winograd path off (the tests then expect the direct kernel everywhere).
add_test(NAME fast_conv_no_winograd COMMAND test_fast_conv --gtest_brief=1 --gtest_filter=FastConv.*:ConvPasses.*)
set_tests_properties(fast_conv_no_winograd PROPERTIES LABELS unit TIMEOUT 600 ENVIRONMENT OPENNPU_CPU_WINOGRAD=0)
