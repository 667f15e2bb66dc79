# tests/report/CMakeLists-report.cmake — `opennpu profile`: the Chrome trace and the HTML report
# (rendered in headless Chromium; skipped with exit 77 where Chromium is not installed).
# Included from tests/CMakeLists.txt.
foreach(_mode IN ITEMS trace html)
  add_test(NAME report_${_mode}
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/check_profile.py ${_mode} $<TARGET_FILE:opennpu>
            ${CMAKE_SOURCE_DIR}/models ${CMAKE_CURRENT_BINARY_DIR}/report_${_mode})
  set_tests_properties(report_${_mode} PROPERTIES LABELS report SKIP_RETURN_CODE 77 TIMEOUT 600)
endforeach()
