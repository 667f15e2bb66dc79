# tests/cpu/CMakeLists-rnn.cmake — fast LSTM/GRU/RNN kernels vs the reference kernels (GTest).
find_package(GTest REQUIRED)
add_executable(test_fast_rnn cpu/test_fast_rnn.cpp)
target_include_directories(test_fast_rnn PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(test_fast_rnn PRIVATE opennpu_cpu GTest::gtest GTest::gtest_main)
add_test(NAME fast_rnn COMMAND test_fast_rnn --gtest_brief=1)
set_tests_properties(fast_rnn PROPERTIES LABELS unit TIMEOUT 600)
