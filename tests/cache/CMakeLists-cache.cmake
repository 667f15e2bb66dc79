# Compiled-model cache: unit tests (ctest) and the load benchmark (run by hand, not in ctest).
# Included from tests/CMakeLists.txt.
find_package(GTest REQUIRED)

add_executable(test_cache ${CMAKE_CURRENT_LIST_DIR}/test_cache.cpp)
target_link_libraries(test_cache PRIVATE opennpu_runtime GTest::gtest GTest::gtest_main)
target_compile_definitions(test_cache PRIVATE OPENNPU_TEST_PYTHON="/usr/bin/python3"
                                              OPENNPU_TEST_CLI="$<TARGET_FILE:opennpu>")
add_dependencies(test_cache opennpu)
add_test(NAME cache_unit COMMAND test_cache)
set_tests_properties(cache_unit PROPERTIES TIMEOUT 600)

add_executable(bench_cache_load ${CMAKE_SOURCE_DIR}/bench/cache_load.cpp)
target_link_libraries(bench_cache_load PRIVATE opennpu_runtime)
