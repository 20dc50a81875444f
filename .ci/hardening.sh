#!/usr/bin/env bash
# CI hardening stage (called by .ci/run after the main suite; as root on a
# fresh Debian machine; about 10-12 minutes on 2 cores):
#
#  1. the whole meson test suite again (but the qemu-emulated runs), built with -fsanitize=address,undefined
#     (UBSan halts on the first report; LeakSanitizer on; Criterion's
#     forked workers are covered too);
#  2. the concurrency tests (suite 'tsan') under ThreadSanitizer, in a build
#     with OpenMP disabled: libgomp is not built with TSan instrumentation,
#     so its barriers and thread pool look like races (false reports).
#     What TSan checks here is the pthread-level concurrency of the API:
#     one-time ISA detection, the atomic ops-table switch, a qkv_mha shared
#     by many threads, per-call scratch;
#  3. the libFuzzer targets (tests/fuzz/), built with clang: first every
#     file of the regression corpora (inputs that once failed) is replayed,
#     then each target fuzzes for FUZZ_SECONDS (default 60) from its seed
#     corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

packages=(meson ninja-build gcc pkg-config libcriterion-dev clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "hardening: installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi

fuzz_seconds=${FUZZ_SECONDS:-60}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1

echo "== hardening: ASan + UBSan, whole test suite"
[ -d build-hard-asan ] || meson setup build-hard-asan -Dbuildtype=debugoptimized \
    -Db_sanitize=address,undefined -Db_lundef=false -Ddemo=false -Dbench=false
ninja -C build-hard-asan -j2
# Not the 'emulated' suite: qemu-user cannot host ASan's shadow memory
# (the runs hang until killed); the same kernel checker runs natively here.
meson test -C build-hard-asan --no-rebuild --print-errorlogs --num-processes 2 \
    --timeout-multiplier 3 --no-suite emulated

echo "== hardening: ThreadSanitizer, concurrency tests (OpenMP off)"
[ -d build-hard-tsan ] || meson setup build-hard-tsan -Dbuildtype=debugoptimized \
    -Db_sanitize=thread -Dopenmp=disabled -Ddemo=false -Dbench=false
ninja -C build-hard-tsan -j2 tests/hard_concurrency tests/hard_first_call
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    meson test -C build-hard-tsan --no-rebuild --print-errorlogs --suite tsan \
    --timeout-multiplier 3

echo "== hardening: libFuzzer (clang)"
tests/fuzz/build.sh build-hard-fuzz
# Huge (invalid) sizes may make the library ask for absurd allocations; it
# must then fail with QKV_E_NOMEM, not have ASan abort the process.
export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1
for target in sdpa mha; do
    exe=build-hard-fuzz/fuzz_$target
    regress=(tests/fuzz/regress_$target/*)
    if [ -e "${regress[0]}" ]; then
        echo "-- $target: replaying ${#regress[@]} regression input(s)"
        "$exe" -runs=1 "${regress[@]}"
    fi
    work=build-hard-fuzz/work_$target
    mkdir -p "$work"
    log=build-hard-fuzz/fuzz_$target.log
    echo "-- $target: fuzzing for ${fuzz_seconds}s"
    if ! "$exe" -max_total_time="$fuzz_seconds" -timeout=20 -rss_limit_mb=4096 \
            -print_final_stats=1 -artifact_prefix=build-hard-fuzz/ \
            "$work" "tests/fuzz/corpus_$target" >"$log" 2>&1; then
        tail -n 80 "$log"
        echo "fuzz_$target failed: the input is build-hard-fuzz/crash-* (add it to"
        echo "tests/fuzz/regress_$target/ once fixed; QKV_FUZZ_VERBOSE=1 decodes it)"
        exit 1
    fi
    grep -E '^Done|stat::number_of_executed_units|stat::peak_rss_mb' "$log"
done
echo "== hardening: all passed"
