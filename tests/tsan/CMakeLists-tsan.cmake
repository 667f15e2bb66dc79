# tests/tsan/CMakeLists-tsan.cmake — concurrent predictions on one Model (label `threads`).
# Every build runs them; the `tsan` preset builds only this target and runs these tests under
# ThreadSanitizer (scripts/sanitize.sh tsan). Exit 77 = skip (models/ not exported).
add_executable(test_concurrent_predict ${CMAKE_CURRENT_LIST_DIR}/test_concurrent_predict.cpp)
target_link_libraries(test_concurrent_predict PRIVATE opennpu_runtime)
add_test(NAME threads_predict_cpu
  COMMAND test_concurrent_predict ${CMAKE_SOURCE_DIR}/models/small_cnn.onnx cpu 8 100)
add_test(NAME threads_predict_npu
  COMMAND test_concurrent_predict ${CMAKE_SOURCE_DIR}/models/small_cnn.onnx npu 8 10)
# The LSTM's recurrence runs on the fast RNN kernel's own helper team (cpu/fast/rnn.cpp): one
# caller at a time gets the team, the others run single-threaded; all must give the same bits.
add_test(NAME threads_predict_lstm
  COMMAND test_concurrent_predict ${CMAKE_SOURCE_DIR}/models/lstm.onnx cpu 4 10)
set_tests_properties(threads_predict_cpu threads_predict_npu threads_predict_lstm PROPERTIES
  LABELS threads SKIP_RETURN_CODE 77 TIMEOUT 900)
