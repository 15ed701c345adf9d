#!/usr/bin/env bash
# The Dovecot integration tests of registration, delivery and retry/410
# with the plugin, the sender service and doveadm's plugin built with
# ASan+UBSan, running inside real Dovecot processes:
#   tests/tooling/asan-integration.sh BUILD_DIR [unittest names...]
# BUILD_DIR is configured with -Db_sanitize=address,undefined -Db_lundef=false.
# Dovecot's binaries are not instrumented: the ASan runtime is preloaded
# into every process the master starts (import_environment) and into the
# dovecot, doveadm and dovecot-lda the tests run, and ASan's shadow memory
# needs default_vsz_limit = 0. Any sanitizer report fails the run.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=$(realpath "$1")
shift
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(test_registration test_delivery test_retry)

work=$(mktemp -d /tmp/cmn-asan-XXXXXX)
trap 'rm -rf "$work"' EXIT
# Test processes run as the mail users: they must reach the work folder,
# and write their reports into a sticky, world-writable one.
chmod 755 "$work"
reports="$work/reports"
mkdir -m 1777 "$reports"
mkdir -m 755 "$work/tmp"

libasan=$(realpath "$(gcc -print-file-name=libasan.so)")
# detect_leaks=0: LeakSanitizer cannot run in Dovecot's chrooted and
# privilege-dropping processes; leaks are valgrind's job (valgrind part).
common="halt_on_error=1:abort_on_error=0:print_stacktrace=1:log_path=$reports/report"
asan_options="$common:detect_leaks=0:detect_odr_violation=0"
ubsan_options="$common"
cat > "$work/sanitizers.conf" <<CONF
# added by tests/tooling/asan-integration.sh
default_vsz_limit = 0
import_environment = TZ CORE_OUTOFMEM CORE_ERROR LD_PRELOAD=$libasan ASAN_OPTIONS=$asan_options UBSAN_OPTIONS=$ubsan_options
CONF

status=0
(cd tests/integration &&
	TMPDIR="$work/tmp" CMN_KEEP_TMP=1 CMN_BUILD_DIR="$build" \
	CMN_DOVECOT_EXTRA_CONF="$work/sanitizers.conf" \
	CMN_DOVECOT_ENV="LD_PRELOAD=$libasan ASAN_OPTIONS=$asan_options UBSAN_OPTIONS=$ubsan_options" \
	/usr/bin/python3 -m unittest -v "${tests[@]}") || status=1

# Reports written by ASan/UBSan (log_path), and any that reached stderr,
# which Dovecot's master turns into lines of its log.
found=0
for report in "$reports"/report.*; do
	[ -e "$report" ] || continue
	echo "==== sanitizer report $report" >&2
	cat "$report" >&2
	found=$((found + 1))
done
while IFS= read -r log; do
	if grep -E 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$log" >&2; then
		echo "==== sanitizer report in $log" >&2
		found=$((found + 1))
	fi
done < <(find "$work/tmp" -name dovecot.log)
logs=$(find "$work/tmp" -name dovecot.log | wc -l)
echo "ASAN-INTEGRATION dovecot_instances=$logs sanitizer_reports=$found"
[ "$found" = 0 ] || status=1
exit $status
