# Sourced by shell tests: the rule of tests/support/require.h for scripts.
#
# require_tool TOOL PACKAGE: TOOL must be installed (found in PATH, /usr/local/sbin, /usr/sbin or
# /sbin, as vmmd finds tools). If it is not, the script stops: outside strict mode with exit 77,
# which CTest reports as "Skipped" (vmm_add_script_test sets SKIP_RETURN_CODE 77); in strict
# mode (VMM_TEST_STRICT=1 or CI=true, as scripts/dev.sh test runs) with a failure naming it.
# VMM_TEST_PRETEND_MISSING=tool[,tool...] hides tools from this probe, to test the skip path.
# Call it at the top level of the script (not inside $(...), whose exit would not stop it).

vmm_strict() {
	for v in "${VMM_TEST_STRICT:-}" "${CI:-}"; do
		case $v in "" | 0 | false) ;; *) return 0 ;; esac
	done
	return 1
}

# vmm_require_missing WHAT: the test cannot run here because WHAT is missing.
vmm_require_missing() {
	if vmm_strict; then
		echo "FAIL: missing dependency (strict mode): $1" >&2
		exit 1
	fi
	echo "[ SKIPPED ] missing dependency: $1"
	exit 77
}

vmm_find_tool() {
	case ",${VMM_TEST_PRETEND_MISSING:-}," in *",$1,"*) return 1 ;; esac
	command -v "$1" 2>/dev/null && return 0
	for d in /usr/local/sbin /usr/sbin /sbin; do
		[ -x "$d/$1" ] && { echo "$d/$1"; return 0; }
	done
	return 1
}

require_tool() {
	vmm_find_tool "$1" >/dev/null || vmm_require_missing "$1 (package $2, looked for in PATH, /usr/local/sbin, /usr/sbin, /sbin)"
}
