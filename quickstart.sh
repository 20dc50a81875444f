#!/usr/bin/env bash
# Installs the build dependencies that are missing (Debian/Ubuntu), builds
# qkv in ./build and runs qkv-demo. Extra arguments go to qkv-demo.
set -euo pipefail
cd "$(dirname "$0")"

packages=(meson ninja-build gcc pkg-config libcriterion-dev libopenblas-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "quickstart: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# Set up build/ unless a complete setup is there. A failed setup leaves
# build/ without build.ninja, and meson setup starts over in it; one that
# was interrupted may also leave meson-private/coredata.dat, which needs
# --reconfigure.
if [ ! -f build/build.ninja ]; then
    if [ -f build/meson-private/coredata.dat ]; then
        meson setup --reconfigure build
    else
        meson setup build
    fi
fi
meson compile -C build
build/demo/qkv-demo "$@"
