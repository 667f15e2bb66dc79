# cmake -P script behind the install_package test (see CMakeLists-install.cmake).
foreach(v BUILD_DIR EXAMPLE_DIR MAKE_MODEL WORK_DIR CXX)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_install_test.cmake: -D${v}=... is required")
  endif()
endforeach()

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${ARGN}\n${out}\n${err}")
  endif()
  set(run_out "${out}" PARENT_SCOPE)
endfunction()

set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

run("install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f include/opennpu/runtime.h include/opennpu/tensor.h include/opennpu/errors.h
          bin/opennpu share/opennpu/hw/ane_m1.toml lib/cmake/opennpu/opennpuConfig.cmake)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${prefix}/${f}")
  endif()
endforeach()
# The public headers must not reach into src/ (which is not installed).
file(GLOB headers ${prefix}/include/opennpu/*.h)
foreach(h ${headers})
  file(STRINGS ${h} incs REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  foreach(i ${incs})
    if(NOT i MATCHES "\"opennpu/")
      message(FATAL_ERROR "${h} includes a non-public header: ${i}")
    endif()
  endforeach()
endforeach()

# The installed CLI finds the installed presets.
execute_process(COMMAND ${CMAKE_COMMAND} -E env OPENNPU_HW_DIR=${prefix}/share/opennpu/hw
  ${prefix}/bin/opennpu hw list RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "ane_m1")
  message(FATAL_ERROR "installed `opennpu hw list` failed (${rc}):\n${out}\n${err}")
endif()

run("making the model" /usr/bin/python3 ${MAKE_MODEL} ${WORK_DIR}/tiny.onnx)
if(NOT BUILD_TYPE)
  set(BUILD_TYPE Release)
endif()
set(link_flags "")
if(SANITIZE)
  set(link_flags "-fsanitize=${SANITIZE}")
endif()
run("configuring the example" ${CMAKE_COMMAND} -S ${EXAMPLE_DIR} -B ${WORK_DIR}/build -G Ninja
  -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${prefix}
  "-DCMAKE_EXE_LINKER_FLAGS=${link_flags}")
run("building the example" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run("running the example" ${WORK_DIR}/build/example ${WORK_DIR}/tiny.onnx)
if(NOT run_out MATCHES "y float32 \\[2,4\\]")
  message(FATAL_ERROR "unexpected example output:\n${run_out}")
endif()
message(STATUS "example printed: ${run_out}")
