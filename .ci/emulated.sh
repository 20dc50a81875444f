#!/usr/bin/env bash
# Emulated CPUs: the kernel checker (qkv-checkkern --quick) on CPUs this
# machine is not, under user-mode qemu, and the baseline-ISA check.
#
#   x86-64 -cpu Westmere  no AVX:             must find only scalar, and pass
#   x86-64 -cpu Haswell   AVX2, no AVX-512:   must find scalar + avx2, and pass
#   aarch64 (cross build) under qemu-aarch64: must find scalar + neon, and pass
#
# An ISA found that the emulated CPU lacks would run its kernels and die of
# SIGILL, so each pass also shows that dispatch kept to what the CPU has.
# Only the framework-free checker runs under qemu: Criterion hangs under
# qemu-aarch64 and its forked workers escape -cpu (see README, Testing). Every
# emulated run is wrapped in `timeout -s KILL` (qemu may ignore SIGTERM).
#
# On a fresh Debian/Ubuntu machine: installs what it needs (as root, or with
# sudo), builds build-emulated (native) and build-aarch64 (cross), and fails
# loudly on the first failure. About 3-5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

RUN_LIMIT_S=900          # per emulated run
NATIVE_DIR=build-emulated
CROSS_DIR=build-aarch64
CROSS_FILE=cross/aarch64-linux-gnu.ini
AARCH64_PREFIX=/usr/aarch64-linux-gnu
LOG_DIR=$NATIVE_DIR/emulated-logs

fail() {
    echo "emulated: FAILED: $*" >&2
    exit 1
}

install_packages() {
    local packages=(meson ninja-build gcc pkg-config python3 coreutils binutils
                    qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "emulated: installing ${missing[*]}"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}"
}

# Configure (once) and build only what the runs need: the library and the
# checker (no Criterion suites, demo or benchmarks).
build() {
    local dir=$1
    shift
    [ -f "$dir/build.ninja" ] ||
        meson setup "$dir" -Dbench=false -Ddemo=false "$@" >"$dir.setup.log" 2>&1 ||
        { cat "$dir.setup.log"; fail "meson setup $dir"; }
    ninja -C "$dir" -j2 src/libqkv.a tests/qkv-checkkern >/dev/null ||
        fail "build $dir"
}

# run NAME EXPECTED_ISAS COMMAND...: runs the checker under a hard time limit,
# then checks its exit status, TAP failures and the ISAs it found.
run() {
    local name=$1 expected=$2
    shift 2
    local log=$LOG_DIR/$name.log
    local start=$SECONDS rc=0
    timeout -s KILL "$RUN_LIMIT_S" env -u QKV_ISA "$@" >"$log" 2>&1 || rc=$?
    local took=$((SECONDS - start))
    # qemu's notes about CPUID bits TCG cannot emulate are noise here.
    sed -i "/TCG doesn't support requested feature/d" "$log"
    local found passed failed
    found=$(sed -n 's/^# ISA \([a-z0-9]*\).*/\1/p' "$log" | tr '\n' ' ' | sed 's/ $//')
    passed=$(grep -c '^ok ' "$log" || true)
    failed=$(grep -c '^not ok ' "$log" || true)
    printf 'emulated: %-9s rc %d, ISAs checked: %s (expected %s), %d ok, %d not ok, %d s\n' \
        "$name" "$rc" "${found:-none}" "$expected" "$passed" "$failed" "$took"
    if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$found" != "$expected" ] ||
       [ "$passed" -eq 0 ]; then
        grep -E '^not ok|^# ' "$log" | tail -n 40 || true
        tail -n 5 "$log"
        [ "$rc" -eq 137 ] && echo "emulated: $name killed after ${RUN_LIMIT_S} s" >&2
        fail "$name (log: $log)"
    fi
    # The ISA dispatch selects on its own must be the best one the CPU has.
    local active
    active=$(sed -n 's/^# active ISA \([a-z0-9]*\).*/\1/p' "$log")
    [ "$active" = "${expected##* }" ] ||
        fail "$name selected '${active:-nothing}', expected ${expected##* }"
    echo "emulated: $name selects $active"
}

install_packages

echo "== emulated: native build ($NATIVE_DIR)"
build "$NATIVE_DIR"
mkdir -p "$LOG_DIR"
meson test -C "$NATIVE_DIR" --no-rebuild --print-errorlogs baseline-isa ||
    fail "baseline-isa: an object outside kernels/avx2|avx512 uses AVX"

echo "== emulated: aarch64 cross build ($CROSS_DIR)"
build "$CROSS_DIR" --cross-file "$CROSS_FILE"

checker=$NATIVE_DIR/tests/qkv-checkkern
echo "== emulated: runs (each under timeout -s KILL $RUN_LIMIT_S)"
run westmere "scalar" qemu-x86_64 -cpu Westmere "$checker" --quick
run haswell "scalar avx2" qemu-x86_64 -cpu Haswell "$checker" --quick
run aarch64 "scalar neon" qemu-aarch64 -L "$AARCH64_PREFIX" \
    "$CROSS_DIR/tests/qkv-checkkern" --quick
echo "== emulated: all runs passed"
