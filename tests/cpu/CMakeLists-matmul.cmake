add_executable(test_fast_matmul cpu/test_fast_matmul.cpp)
target_link_libraries(test_fast_matmul PRIVATE opennpu_cpu GTest::gtest_main)
add_test(NAME fast_matmul COMMAND test_fast_matmul)
