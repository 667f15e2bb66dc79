# tests/explore/CMakeLists-explore.cmake — `opennpu explore` and `python3 -m opennpu.explore` on a
# small generated sweep (docs/explore.md). Included from tests/CMakeLists.txt.
set(_explore_pythonpath ${CMAKE_BINARY_DIR}/python)
foreach(_mode IN ITEMS badfiles reuse resume dask html)
  add_test(NAME explore_${_mode}
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/check_explore.py ${_mode} $<TARGET_FILE:opennpu>
            ${_explore_pythonpath} ${CMAKE_CURRENT_BINARY_DIR}/explore_${_mode})
  set_tests_properties(explore_${_mode} PROPERTIES LABELS explore SKIP_RETURN_CODE 77 TIMEOUT 900)
  if(OPENNPU_PYTHON_PRELOAD)  # ASan build: python3 processes that import the module preload the runtime
    set_tests_properties(explore_${_mode} PROPERTIES ENVIRONMENT "OPENNPU_PYTHON_PRELOAD=${OPENNPU_PYTHON_PRELOAD}")
  endif()
endforeach()
# The plots and the Dask entry point need the Python package in the build dir.
if(NOT OPENNPU_BUILD_PYTHON)
  set_tests_properties(explore_dask explore_badfiles PROPERTIES DISABLED TRUE)
endif()
