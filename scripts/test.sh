#!/usr/bin/env bash
# The test command: installs dependencies, configures, builds (warnings are
# errors) and runs the unit and integration suites against real services.
#
#   scripts/test.sh [BUILD_DIR]     (default: build)
#
# Under CI=true a missing service fails the run instead of skipping tests.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}

scripts/bootstrap.sh

if [[ ! -f $build_dir/build.ninja ]]; then
  meson setup "$build_dir" -Dwerror=true -Dtests=enabled \
    -Dintegration_tests=enabled -Dbenchmarks=enabled
fi
ninja -C "$build_dir"
meson test -C "$build_dir" --suite unit --suite integration --print-errorlogs \
  --num-processes 2
