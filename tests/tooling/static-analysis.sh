#!/usr/bin/env bash
# clang-tidy (config: .clang-tidy) and cppcheck (suppressions:
# tests/tooling/cppcheck-suppressions.xml) on the project's own code,
# plugin/, as compiled by BUILD_DIR (its compile_commands.json):
#   tests/tooling/static-analysis.sh BUILD_DIR
# Any finding fails the run. Prints one "STATIC ..." line with the counts.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=$(realpath "$1")
test -f "$build/compile_commands.json"
work=$(mktemp -d /tmp/cmn-static-XXXXXX)
trap 'rm -rf "$work"' EXIT
jobs=$(nproc)
status=0

# One compile command per file: test_support.cc is in every unit test, and
# clang-tidy would check it once for each of its entries.
mkdir "$work/db"
/usr/bin/python3 -c 'import json, sys
seen = {}
for e in json.load(open(sys.argv[1])):
    seen.setdefault(e["file"], e)
json.dump(list(seen.values()), open(sys.argv[2], "w"))' \
	"$build/compile_commands.json" "$work/db/compile_commands.json"

# run-clang-tidy colours its output whatever the terminal: strip it.
if ! /usr/bin/python3 /usr/bin/run-clang-tidy-14 -p "$work/db" -j "$jobs" -quiet \
		"^$PWD/plugin/" > "$work/tidy.raw" 2>&1; then
	status=1
fi
sed 's/\x1b\[[0-9;]*m//g' "$work/tidy.raw" > "$work/tidy.log"
grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error): ' "$work/tidy.log" | sort -u > "$work/tidy.findings" || true
tidy=$(wc -l < "$work/tidy.findings")
if [ "$tidy" != 0 ]; then
	echo "==== clang-tidy: $tidy finding(s)" >&2
	cat "$work/tidy.findings" >&2
	status=1
elif [ "$status" != 0 ]; then
	tail -n 40 "$work/tidy.log" >&2   # clang-tidy failed without a finding
fi

# No -j: cppcheck 2.10 drops symbolName suppressions in its -j workers.
suppressions=tests/tooling/cppcheck-suppressions.xml
mkdir "$work/cppcheck"
cppcheck --project="$build/compile_commands.json" --file-filter='*plugin*' \
	--enable=warning,style,performance,portability --inline-suppr \
	--suppress-xml="$suppressions" --error-exitcode=1 \
	--cppcheck-build-dir="$work/cppcheck" -q \
	--template='{file}:{line}: {severity}: {message} [{id}]' 2> "$work/cppcheck.log" || status=1
cppcheck_n=$(grep -c '\[[A-Za-z0-9_]*\]$' "$work/cppcheck.log" || true)
if [ "$cppcheck_n" != 0 ]; then
	echo "==== cppcheck: $cppcheck_n finding(s)" >&2
	cat "$work/cppcheck.log" >&2
fi

files=$(/usr/bin/python3 -c 'import json, sys
print(len({e["file"] for e in json.load(open(sys.argv[1])) if "/plugin/" in "/" + e["file"]}))' \
	"$build/compile_commands.json")
echo "STATIC files=$files clang_tidy_findings=$tidy cppcheck_findings=$cppcheck_n" \
	"cppcheck_suppressions=$(grep -c '<suppress>' "$suppressions")" \
	"clang_tidy_disabled_checks=$(grep -c '^  -' .clang-tidy)"
exit $status
