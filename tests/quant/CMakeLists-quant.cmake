# tests/quant/CMakeLists-quant.cmake — opennpu quantize and the QDQ fusion (issue 8, CPU side).
# Included from tests/CMakeLists.txt. Exit 77 = skip (models/ not exported, or no ORT harness).
add_test(NAME quant_small_cnn
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/test_quantize.py $<TARGET_FILE:opennpu> ${CMAKE_SOURCE_DIR}/models)
set_tests_properties(quant_small_cnn PROPERTIES LABELS "quant;models" SKIP_RETURN_CODE 77 TIMEOUT 600)
# The same, plus ONNX Runtime on the quantized file (../shared/tools/ort next to the checkout).
add_test(NAME quant_small_cnn_vs_ort
  COMMAND sh -c "if [ ! -f '${CMAKE_SOURCE_DIR}/../shared/tools/ort/ort-run.js' ] || ! command -v node >/dev/null; then echo 'SKIP: ONNX Runtime harness (../shared/tools/ort) or node missing'; exit 77; fi; exec /usr/bin/python3 '${CMAKE_CURRENT_LIST_DIR}/test_quantize.py' '$<TARGET_FILE:opennpu>' '${CMAKE_SOURCE_DIR}/models' --ort '${CMAKE_SOURCE_DIR}/../shared/tools/ort'")
set_tests_properties(quant_small_cnn_vs_ort PROPERTIES LABELS "quant;models" SKIP_RETURN_CODE 77 TIMEOUT 600)
# fuse_qdq: which QDQ patterns become QLinearConv/QLinearMatMul/QGemm, and their values vs numpy.
add_test(NAME quant_fuse_qdq
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/test_fuse_qdq.py $<TARGET_FILE:opennpu>)
set_tests_properties(quant_fuse_qdq PROPERTIES LABELS quant TIMEOUT 300)
