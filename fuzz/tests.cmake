# Included by the main build: the fuzz targets' short runs as tests (labels fuzz and hostile).
# fuzz.build configures and builds the nested clang build in build/fuzz (incrementally) as the
# setup fixture; each fuzz.NAME runs every seed of fuzz/corpus/NAME, regression inputs included,
# then fuzzes for VMM_FUZZ_SECONDS (5 by default).
include(${CMAKE_CURRENT_LIST_DIR}/targets.cmake)
set(VMM_FUZZ_SECONDS 5 CACHE STRING "Seconds of fuzzing per target in the test suite")
vmm_add_script_test(fuzz.build ${CMAKE_CURRENT_LIST_DIR}/build.sh ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/fuzz)
set_tests_properties(fuzz.build PROPERTIES FIXTURES_SETUP vmm_fuzz_build LABELS "fuzz;hostile" TIMEOUT 3000)
foreach(t ${VMM_FUZZ_TARGETS})
  vmm_add_script_test(fuzz.${t} ${CMAKE_CURRENT_LIST_DIR}/run.sh ${t} ${VMM_FUZZ_SECONDS} --ci)
  set_tests_properties(fuzz.${t} PROPERTIES FIXTURES_REQUIRED vmm_fuzz_build LABELS "fuzz;hostile" TIMEOUT 300
                       ENVIRONMENT "VMM_FUZZ_BUILD=${CMAKE_BINARY_DIR}/fuzz")
endforeach()
