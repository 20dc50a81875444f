#!/usr/bin/env bash
# Builds the libFuzzer targets with clang, outside the main meson build:
# the library is configured in its own build directory with clang and
# -fsanitize=fuzzer-no-link,address,undefined (OpenMP off: one fuzzing
# process, one thread, many executions), then each target is linked with
# -fsanitize=fuzzer against it and the double reference.
#
#   tests/fuzz/build.sh [BUILD_DIR]      (default: build-hard-fuzz)
#
# Produces BUILD_DIR/fuzz_sdpa and BUILD_DIR/fuzz_mha. -O1 without -g:
# at -O2 -g, clang takes minutes per AVX-512 kernel file under ASan, UBSan
# and coverage instrumentation; -O1 keeps the build within CI time.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-hard-fuzz}
cc=${CC_FUZZ:-clang}
san='-fsanitize=address,undefined -fno-sanitize-recover=undefined'

if [ ! -d "$build" ]; then
    CC=$cc meson setup "$build" -Dbuildtype=plain -Dopenmp=disabled \
        -Dtests=disabled -Ddemo=false -Dbench=false -Db_lundef=false \
        "-Dc_args=-O1 -fsanitize=fuzzer-no-link $san" "-Dc_link_args=$san" >/dev/null
fi
ninja -C "$build" src/libqkv.a >/dev/null

for target in fuzz_sdpa fuzz_mha; do
    "$cc" -std=c11 -g -O1 -D_GNU_SOURCE -Wall -Wextra -ffp-contract=off \
        -fsanitize=fuzzer $san -Iinclude -Itests -I"$build" \
        "tests/fuzz/$target.c" tests/hardening/hard_util.c tests/ref/ref.c \
        "$build/src/libqkv.a" -lm -lpthread -o "$build/$target"
done
echo "built $build/fuzz_sdpa $build/fuzz_mha"
