# Included by the main build: the fuzz targets' short runs as tests (labels fuzz and hostile).
# They are built in the nested ASan+UBSan build (build/asan, with the asan.* unit tests), whose
# setup fixture asan.build (tests/sanitizers) builds them incrementally; each fuzz.NAME runs
# every seed of fuzz/corpus/NAME, regression inputs included, then fuzzes for VMM_FUZZ_SECONDS
# (3 by default). Unlike every other test they are not RUN_SERIAL: the test command's ctest -j2
# runs two at a time (tests/CMakeLists.txt).
include(${CMAKE_CURRENT_LIST_DIR}/targets.cmake)
set(VMM_FUZZ_SECONDS 3 CACHE STRING "Seconds of fuzzing per target in the test suite")
foreach(t ${VMM_FUZZ_TARGETS})
  vmm_add_script_test(fuzz.${t} ${CMAKE_CURRENT_LIST_DIR}/run.sh ${t} ${VMM_FUZZ_SECONDS} --ci)
  set_tests_properties(fuzz.${t} PROPERTIES FIXTURES_REQUIRED vmm_asan_build LABELS "fuzz;hostile" TIMEOUT 300 RUN_SERIAL OFF
                       ENVIRONMENT "VMM_FUZZ_BUILD=${CMAKE_BINARY_DIR}/asan")
endforeach()
