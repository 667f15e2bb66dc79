# tests/cpu/CMakeLists-conv-dw.cmake — FusedConvDw (1x1 conv + depthwise conv, cpu/fast/conv_dw.cpp) vs the reference (GTest).
find_package(GTest REQUIRED)
add_executable(test_fast_conv_dw cpu/test_fast_conv_dw.cpp)
target_include_directories(test_fast_conv_dw PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(test_fast_conv_dw PRIVATE opennpu_cpu GTest::gtest GTest::gtest_main)
add_test(NAME fast_conv_dw COMMAND test_fast_conv_dw --gtest_brief=1)
set_tests_properties(fast_conv_dw PROPERTIES LABELS unit TIMEOUT 600)
