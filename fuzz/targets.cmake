# The fuzz targets: one fuzz_NAME.cc each, a seed corpus in corpus/NAME/ (checked in, small),
# an optional dictionary dict/NAME.dict and libFuzzer flags in options/NAME. Read by the fuzz
# build (CMakeLists.txt here) and by the main build, which runs each one briefly (tests.cmake).
set(VMM_FUZZ_TARGETS
  units names image_header tar leases toml_config base64 model_json libvirt_xml cloud_init
  state_store qmp_agent xen_config lvm_report rpc_lines http_server wire_types)
