#!/usr/bin/env bash
# make test: install what is missing, build, and run every test.
#
#   scripts/test.sh [all|unit|e2e|fuzz]     (default all)
#
# Stages: gcc -Wall -Wextra -Werror build + unit tests; the same unit tests
# under AddressSanitizer + UndefinedBehaviorSanitizer (any finding fails: no
# recovery); end-to-end tests with
# real clients (pytest); a short libFuzzer run of every fuzz target. The last
# line is "N passed, M failed"; the exit status is non-zero on any failure.
# A skipped test counts as failed: a skip would hide a missing install step.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
what=${1:-all}
RESULTS=$ROOT/build/test-results
FUZZ_SECONDS=${FUZZ_SECONDS:-20}

scripts/deps.sh test || { echo "test: installing dependencies failed"; echo "0 passed, 1 failed"; exit 1; }
mkdir -p build
rm -rf "$RESULTS"; mkdir -p "$RESULTS"

stage() { printf '\n==== %s ====\n' "$*"; }

meson_stage() { # name builddir [meson setup args...]
    local name=$1 dir=$2; shift 2
    stage "$name: build ($dir)"
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >"$RESULTS/$name-setup.log" 2>&1 ||
            { cat "$RESULTS/$name-setup.log"; echo "{\"name\": \"$name-build\", \"result\": \"FAIL\"}" >"$RESULTS/$name.json"; return; }
    fi
    if ! ninja -C "$dir" >"$RESULTS/$name-build.log" 2>&1; then
        tail -50 "$RESULTS/$name-build.log"
        echo "{\"name\": \"$name-build\", \"result\": \"FAIL\"}" >"$RESULTS/$name.json"
        return
    fi
    stage "$name: unit tests"
    meson test -C "$dir" --suite unit --print-errorlogs --num-processes 2
    cp "$dir/meson-logs/testlog.json" "$RESULTS/$name.json"
}

e2e_stage() {
    stage "e2e: build"
    make --no-print-directory build >"$RESULTS/e2e-build.log" 2>&1 ||
        { tail -50 "$RESULTS/e2e-build.log"; echo '<testsuite><testcase name="build"><failure/></testcase></testsuite>' >"$RESULTS/e2e.xml"; return; }
    stage "e2e: real clients (pytest)"
    IOC_BUILD=$ROOT/build /usr/bin/python3 -m pytest tests/e2e -q -rfEs \
        --junitxml="$RESULTS/e2e.xml" -p no:cacheprovider
}

fuzz_stage() {
    stage "fuzz: ${FUZZ_SECONDS}s per target"
    FUZZ_RESULTS=$RESULTS scripts/fuzz.sh "$FUZZ_SECONDS"
}

case "$what" in
    unit)
        meson_stage unit build --buildtype=debugoptimized
        meson_stage asan build-asan -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug \
            -Dc_args=-fno-sanitize-recover=all ;;
    e2e) e2e_stage ;;
    fuzz) fuzz_stage ;;
    all)
        meson_stage unit build --buildtype=debugoptimized
        meson_stage asan build-asan -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug \
            -Dc_args=-fno-sanitize-recover=all
        e2e_stage
        fuzz_stage ;;
    *) echo "usage: $0 [all|unit|e2e|fuzz]" >&2; exit 2 ;;
esac

stage "summary"
/usr/bin/python3 scripts/test_summary.py "$RESULTS"
