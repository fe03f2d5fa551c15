#!/usr/bin/env bash
# Installs libciagent into a temporary root and builds and runs a program
# against it using only `pkg-config libciagent`: the embedding contract.
#   pkg_config_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$1
source_dir=$2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

meson install -C "$build_dir" --destdir "$root" --no-rebuild >/dev/null
prefix=$(meson introspect "$build_dir" --buildoptions |
  python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')
pc=$(find "$root" -name libciagent.pc | head -n 1)
[[ -n $pc ]] || { echo "libciagent.pc was not installed"; exit 1; }
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
flags=$(pkg-config --define-variable=prefix="$root$prefix" --cflags --libs libciagent)
# pkg-config's answer is a list of compiler arguments: split it.
# shellcheck disable=SC2086
c++ -std=c++20 "$source_dir/consumer.cc" $flags -o "$root/consumer"
libdir=$(pkg-config --define-variable=prefix="$root$prefix" --variable=libdir libciagent)
out=$(LD_LIBRARY_PATH=$libdir "$root/consumer")
[[ $out == 'ci:job:{embedded}' ]] || { echo "unexpected output: $out"; exit 1; }
echo "1 passed, 0 failed"
