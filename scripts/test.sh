#!/usr/bin/env bash
# The test command: installs dependencies, configures, builds (warnings are
# errors) and runs the unit and integration suites against real services.
#
#   scripts/test.sh [--sanitizers] [--arm64] [BUILD_DIR]   (default: build)
#
# Under CI=true a missing service fails the run instead of skipping tests.
#
# Sanitizers: under CI=true, with --sanitizers or with CIAGENT_SANITIZERS=1,
# a second pass follows: scripts/test-sanitizers.sh builds BUILD_DIR-asan
# (clang, AddressSanitizer + LeakSanitizer + UndefinedBehaviorSanitizer) and
# runs the unit suite and a chosen part of the integration suite there (the
# list and its reasons are in that script). CIAGENT_SANITIZERS=0 skips the
# pass, under CI too.
#
# aarch64: under CI=true, with --arm64 or with CIAGENT_ARM64=1, a last pass
# follows: scripts/test-arm64.sh cross-builds BUILD_DIR-arm64 and runs the
# unit suite, the Redis and git integration tests and one job end to end
# under qemu-user (docs/deployment.md, "ARM64"). CIAGENT_ARM64=0 skips it.
#
# The run fails when any pass fails.
set -euo pipefail
prog=test.sh
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

in_ci=0
if [[ ${CI:-} == true ]]; then in_ci=1; fi
sanitizers=${CIAGENT_SANITIZERS:-$in_ci}
arm64=${CIAGENT_ARM64:-$in_ci}
build_dir=build
for arg in "$@"; do
  case $arg in
    --sanitizers) sanitizers=1 ;;
    --arm64) arm64=1 ;;
    -h | --help) print_help ;;
    -*) unknown_option "$arg" ;;
    *) build_dir=$arg ;;
  esac
done

scripts/bootstrap.sh
# The pipeline tests run real cargo; a rustup toolchain lives here.
if [[ -x $HOME/.cargo/bin/cargo ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

if [[ ! -f $build_dir/build.ninja ]]; then
  meson setup "$build_dir" -Dwerror=true -Dtests=enabled \
    -Dintegration_tests=enabled -Dbenchmarks=enabled -Dwebhook=enabled
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

if [[ $sanitizers == 1 ]]; then
  scripts/test-sanitizers.sh "$build_dir-asan" || status=1
fi
if [[ $arm64 == 1 ]]; then
  scripts/test-arm64.sh "$build_dir-arm64" || status=1
fi
exit "$status"
