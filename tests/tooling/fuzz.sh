#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time on a copy of its corpus:
#   tests/tooling/fuzz.sh BUILD_DIR [SECONDS_PER_TARGET]   (default 30)
# BUILD_DIR is configured with CC=clang CXX=clang++ -Dfuzzing=true. The
# corpus kept in git (plugin/fuzz/corpus/<target>/) is only read: new
# inputs go to a temporary copy. A crash, leak, timeout or broken promise
# fails the run; the crashing input is kept in BUILD_DIR/fuzz-artifacts/.
# Prints one "FUZZ <target> runs=... execs_per_sec=... corpus=..." line each.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=$1
seconds=${2:-30}
work=$(mktemp -d /tmp/cmn-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"

status=0
for seeds in plugin/fuzz/corpus/*/; do
	target=fuzz_$(basename "$seeds")
	binary="$build/plugin/fuzz/$target"
	if [ ! -x "$binary" ]; then
		echo "fuzz.sh: $binary is not built" >&2
		status=1
		continue
	fi
	corpus="$work/$target"
	mkdir -p "$corpus"
	cp "$seeds"* "$corpus/"
	log="$work/$target.log"
	# -timeout: one input taking a second is a hang; -rss_limit_mb: a
	# parser that balloons on a small input is a bug too.
	if ! "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
			-print_final_stats=1 -artifact_prefix="$artifacts/$target-" \
			"$corpus" >"$log" 2>&1; then
		tail -n 60 "$log" >&2
		echo "fuzz.sh: $target FAILED (input kept in $artifacts/)" >&2
		status=1
		continue
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	echo "FUZZ $target runs=$runs execs_per_sec=$rate seconds=$seconds" \
		"seeds=$(ls "$seeds" | wc -l) corpus=$(ls "$corpus" | wc -l)"
done
exit $status
