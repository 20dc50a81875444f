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

[ -d build ] || meson setup build
meson compile -C build
build/demo/qkv-demo "$@"
