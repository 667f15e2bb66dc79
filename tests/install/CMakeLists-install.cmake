# install_package: `cmake --install` this build into a scratch prefix, then build and run
# tests/install/example against it with a separate CMake (find_package(opennpu CONFIG)).
# A sanitizer build's static libs need the sanitizer runtime when the example links them.
set(_san "")
if(OPENNPU_SANITIZE)
  string(REPLACE ";" "," _san "${OPENNPU_SANITIZE}")
endif()
add_test(NAME install_package
  COMMAND ${CMAKE_COMMAND}
    -DBUILD_DIR=${CMAKE_BINARY_DIR}
    -DEXAMPLE_DIR=${CMAKE_CURRENT_LIST_DIR}/example
    -DMAKE_MODEL=${CMAKE_CURRENT_LIST_DIR}/make_model.py
    -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/install_package
    -DCXX=${CMAKE_CXX_COMPILER}
    -DBUILD_TYPE=${CMAKE_BUILD_TYPE}
    "-DSANITIZE=${_san}"
    -P ${CMAKE_CURRENT_LIST_DIR}/run_install_test.cmake)
set_tests_properties(install_package PROPERTIES TIMEOUT 300)
