# tests/cpu/CMakeLists-quant.cmake — fast int8 kernels vs the reference kernels, bit for bit (GTest).
find_package(GTest REQUIRED)
add_executable(test_fast_quant cpu/test_fast_quant.cpp)
target_include_directories(test_fast_quant PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(test_fast_quant PRIVATE opennpu_cpu GTest::gtest GTest::gtest_main)
add_test(NAME fast_quant COMMAND test_fast_quant --gtest_brief=1)
set_tests_properties(fast_quant PROPERTIES LABELS unit TIMEOUT 600)
