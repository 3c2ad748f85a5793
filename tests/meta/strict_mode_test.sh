#!/bin/sh
# What a missing dependency does to a test run, end to end through CTest:
#  - strict mode (VMM_TEST_STRICT=1, or CI=true): the test fails and names what is missing;
#  - otherwise CTest reports the test as "Skipped", not "Passed";
#  - a binary with a failure and a skip is "Failed", never "Skipped".
# tgtd is hidden from the test probes with VMM_TEST_PRETEND_MISSING (the real one may well be
# installed); with it missing every storage_iscsi_test case stops in SetUp, so this is fast.
#
# usage: strict_mode_test.sh BUILD_DIR CTEST
set -u
BUILD=$1
CTEST=$2
ISCSI=$BUILD/tests/storage/storage_iscsi_test
[ -x "$ISCSI" ] || { echo "FAIL: $ISCSI is not built"; exit 1; }
unset CI VMM_TEST_STRICT VMM_TEST_PRETEND_MISSING VMM_META_FAIL

failures=0
# expect DESCRIPTION EXIT(zero|nonzero) PATTERN -- VAR=VALUE... COMMAND...
expect() {
  what=$1 want=$2 pattern=$3
  shift 4
  out=$(env "$@" 2>&1)
  rc=$?
  ok=1
  case $want in zero) [ $rc -eq 0 ] || ok=0 ;; nonzero) [ $rc -ne 0 ] || ok=0 ;; esac
  printf '%s\n' "$out" | grep -Eq -- "$pattern" || ok=0
  if [ $ok -eq 1 ]; then
    echo "ok: $what"
  else
    echo "FAIL: $what (exit $rc, expected $want and /$pattern/)"
    printf '%s\n' "$out" | tail -n 30
    failures=$((failures + 1))
  fi
}
ctest_one() { echo "cd '$BUILD' && '$CTEST' -R '^$1\$'"; }

expect "VMM_TEST_STRICT=1 without tgtd fails and names it" nonzero \
  'missing dependency \(strict mode\): tgtd \(package tgt' -- VMM_TEST_STRICT=1 VMM_TEST_PRETEND_MISSING=tgtd "$ISCSI"
expect "CI=true without tgtd fails and names it" nonzero \
  'missing dependency \(strict mode\): tgtd \(package tgt' -- CI=true VMM_TEST_PRETEND_MISSING=tgtd "$ISCSI"
expect "VMM_TEST_STRICT=1 as if not root fails and names root" nonzero \
  'missing dependency \(strict mode\): root \(tgtd\)' -- VMM_TEST_STRICT=1 VMM_TEST_PRETEND_MISSING=root "$ISCSI"
expect "without strict mode the binary exits 0 and says it skipped" zero \
  '\[ VMM-SKIP \] ([0-9]+) of \1 tests skipped, none failed' -- VMM_TEST_PRETEND_MISSING=tgtd "$ISCSI"

expect "non-strict without tgtd: CTest shows storage.storage_iscsi_test as Skipped" zero \
  'storage\.storage_iscsi_test \.+\*+Skipped' -- VMM_TEST_PRETEND_MISSING=tgtd sh -c "$(ctest_one 'storage\.storage_iscsi_test')"
expect "strict without tgtd: CTest shows storage.storage_iscsi_test as Failed" nonzero \
  'storage\.storage_iscsi_test \.+\*+Failed' -- VMM_TEST_STRICT=1 VMM_TEST_PRETEND_MISSING=tgtd sh -c "$(ctest_one 'storage\.storage_iscsi_test')"

expect "a skip and nothing failed: Skipped" zero \
  'meta\.skip_report_probe \.+\*+Skipped' -- VMM_TEST_PRETEND_MISSING=sh sh -c "$(ctest_one 'meta\.skip_report_probe')"
expect "a skip and a failure in one binary: Failed, not Skipped" nonzero \
  'meta\.skip_report_probe \.+\*+Failed' -- VMM_TEST_PRETEND_MISSING=sh VMM_META_FAIL=1 sh -c "$(ctest_one 'meta\.skip_report_probe')"
expect "nothing missing, nothing failing: Passed" zero \
  'meta\.skip_report_probe \.+ +Passed' -- VMM_TEST_STRICT=1 sh -c "$(ctest_one 'meta\.skip_report_probe')"

[ $failures -eq 0 ] || { echo "$failures check(s) failed"; exit 1; }
echo "all checks passed"
