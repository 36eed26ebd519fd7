#!/usr/bin/env bash
# make fuzz: build every libFuzzer target in tests/fuzz with clang
# (-fsanitize=fuzzer,address,undefined) and run each for SECONDS (default 60)
# from its seed corpus. A crash, leak or timeout fails the target; the
# reproducer is left in build-fuzz/artifacts/.
#   scripts/fuzz.sh [SECONDS]
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-60}
OUT=${FUZZ_RESULTS:-build-fuzz/results}
mkdir -p "$OUT" build-fuzz/artifacts
xml=$OUT/fuzz.xml
echo '<testsuite name="fuzz">' >"$xml"

if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false -Db_lundef=false \
        --buildtype=debugoptimized >"$OUT/fuzz-setup.log" 2>&1 || { cat "$OUT/fuzz-setup.log"; }
fi
if ! ninja -C build-fuzz >"$OUT/fuzz-build.log" 2>&1; then
    tail -40 "$OUT/fuzz-build.log"
    echo '<testcase classname="fuzz" name="build"><failure/></testcase></testsuite>' >>"$xml"
    exit 1
fi
rc=0
for bin in build-fuzz/tests/fuzz/fuzz_*; do
    [ -f "$bin" ] && [ -x "$bin" ] || continue  # skip meson's *.p object folders
    name=$(basename "$bin")
    corpus=build-fuzz/corpus/$name
    mkdir -p "$corpus"
    seeds=tests/fuzz/seeds/${name#fuzz_}
    echo "fuzz: $name for ${SECONDS_PER}s"
    if "$bin" -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix=build-fuzz/artifacts/ -print_final_stats=1 \
        "$corpus" $( [ -d "$seeds" ] && echo "$seeds" ) >"$OUT/$name.log" 2>&1; then
        echo "  <testcase classname=\"fuzz\" name=\"$name\"/>" >>"$xml"
        grep -E '^stat::number_of_executed_units' "$OUT/$name.log" | sed 's/^/  /'
    else
        rc=1
        tail -30 "$OUT/$name.log"
        echo "  <testcase classname=\"fuzz\" name=\"$name\"><failure/></testcase>" >>"$xml"
    fi
done
echo '</testsuite>' >>"$xml"
exit $rc
