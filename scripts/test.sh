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
# The pipeline tests run real cargo; a rustup toolchain lives here.
if [[ -x $HOME/.cargo/bin/cargo ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

if [[ ! -f $build_dir/build.ninja ]]; then
  meson setup "$build_dir" -Dwerror=true -Dtests=enabled \
    -Dintegration_tests=enabled -Dbenchmarks=enabled
fi
ninja -C "$build_dir"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
meson test -C "$build_dir" --suite unit --suite integration --print-errorlogs \
  --num-processes 2 | tee "$log" || status=$?
# One closing line a reader (or CI) can take in at a glance.
count() {
  local n
  n=$(awk -v k="$1:" 'index($0, k) == 1 { print $NF }' "$log" | tail -n 1)
  echo "${n:-0}"
}
echo "$(( $(count Ok) + $(count "Expected Fail") )) passed, $(( $(count Fail) + $(count Timeout) + $(count "Unexpected Pass") )) failed, $(count Skipped) skipped"
exit "$status"
