#!/usr/bin/env bash
# The sanitizer pass of the test command: configures and builds a tree with
# clang, -fsanitize=address,undefined (LeakSanitizer included) at -O0, and
# runs there the unit suite and the integration tests listed below. Any
# sanitizer report fails the test that triggered it: the test binaries and
# the tools they drive (ci-consume, ci-build, ci-cache-prune) are
# instrumented, and so is libciagent. What the tests spawn besides (cargo,
# git, redis-server, buildah, skopeo, python) is not, and needs not be.
#
#   scripts/test-sanitizers.sh [--all] [BUILD_DIR [TEST...]]
#                              (default: build-asan)
#
# scripts/test.sh runs it under CI=true (or with --sanitizers) after the
# main pass; it assumes scripts/bootstrap.sh has run. --all runs the whole
# integration suite instead of the list; TEST names pick tests by meson name
# (e.g. queue/job_queue_test) instead of both.
#
# Reports: ASan/UBSan stop the process at the first error and print a stack;
# LeakSanitizer reports at exit (a process leaving through _exit or
# execve, such as a forked child, is not checked). Suppressions of false
# positives live in tests/sanitizers/, each with its reason.
set -euo pipefail
prog=test-sanitizers.sh
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

build_dir=build-asan
all=0
positional=0
tests=()
for arg in "$@"; do
  case $arg in
    --all) all=1 ;;
    -h | --help) print_help ;;
    -*) unknown_option "$arg" ;;
    *)
      if ((positional++ == 0)); then build_dir=$arg; else tests+=("$arg"); fi
      ;;
  esac
done

# The integration tests run under the sanitizers in CI. The whole suite
# takes about as long again as the main pass, more than CI's time budget
# allows on top of it; these cover every part of the library and both
# tools at a fraction of that: the queue (Lua scripts, leases, claims;
# Redis over TLS: the socket and TLS layer),
# ci-consume with its fetch (libgit2, credentials), the OCI client and
# push (libcurl, auth, retries), ci-build on real cargo (process runner,
# cancel, SIGTERM, timeouts, masking), the log shipper, the pruner and the
# secrets check of the whole chain. Left out, for their time and because
# they add little C++ the above do not run: pipeline_test and
# build_cache_test (mostly cargo), fetch_test (mostly git servers),
# registry_client_test's fault-injection rounds, redis_sentinel_test (two
# minutes of failovers; run it by name when the Sentinel code changes),
# image_builder/image_step (buildah), the e2e chain, and the non-C++ checks
# (pkg-config, packaging).
integration_subset=(
  queue/redis_client_test
  queue/job_queue_test
  queue/ci_consume_test
  queue/redis_tls_test
  git/ci_consume_fetch_test
  oci/push_test
  agent/log_shipper_test
  agent/ci_build_test
  cache/ci_cache_prune_test
  secrets/argv_secrets_test
)

supp=$PWD/tests/sanitizers
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:suppressions=$supp/asan.supp"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"

if [[ ! -f $build_dir/build.ninja ]]; then
  # -O0: instrumented test files (big gtest bodies) compile about 2.5
  # times faster than at -O1, and the tests wait on services and cargo far
  # more than they compute. No benchmarks or fuzzers (the fuzzers have their
  # own ASan build). clang's sanitizer runtimes need -Db_lundef=false.
  CXX=${CXX_SANITIZE:-clang++} meson setup "$build_dir" \
    -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug -Doptimization=0 -Dwerror=true \
    -Dtests=enabled -Dintegration_tests=enabled \
    -Dbenchmarks=disabled -Dfuzzers=disabled
fi
# The tests: of the suites chosen, those whose program is built in this tree
# (the C++ ones; script checks such as packaging/* gain nothing here), and
# the integration tests named. Only what they need is built: their programs
# and the ones they drive (meson's own lists, from `meson introspect`).
if ((all)); then
  selection=(--suite unit --suite integration)
elif ((${#tests[@]} > 0)); then
  selection=("${tests[@]}")
else
  selection=(--suite unit "${integration_subset[@]}")
fi
# meson's introspection describes the tree as last generated: regenerate
# first, or a test added to a meson.build since would be missed.
ninja -C "$build_dir" build.ninja >/dev/null
plan=$(meson introspect "$build_dir" --tests --targets |
  python3 -c '
import json, os, sys
root, args = os.path.realpath(sys.argv[1]), sys.argv[2:]
suites = {args[i + 1] for i, a in enumerate(args) if a == "--suite"}
names = {a for i, a in enumerate(args)
         if a != "--suite" and (i == 0 or args[i - 1] != "--suite")}
info = json.load(sys.stdin)
files = {t["id"]: t["filename"] for t in info["targets"]}
def here(path):
    path = os.path.realpath(path)
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else None
targets, tests = set(), []
for test in info["tests"]:
    in_suite = any(s.split(":")[-1] in suites for s in test["suite"])
    if test["name"] not in names and not (in_suite and here(test["cmd"][0])):
        continue
    tests.append(test["name"])
    paths = [test["cmd"][0]] + [f for d in test["depends"] for f in files.get(d, [])]
    targets.update(filter(None, map(here, paths)))
missing = names - set(tests)
if missing:
    sys.exit("test-sanitizers.sh: no such test: " + " ".join(sorted(missing)))
for target in sorted(targets):
    print("build", target)
for name in tests:
    print("test", name)
' "$build_dir" "${selection[@]}")
mapfile -t targets < <(sed -n 's/^build //p' <<<"$plan")
mapfile -t names < <(sed -n 's/^test //p' <<<"$plan")
ninja -C "$build_dir" "${targets[@]}"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
meson test -C "$build_dir" --no-rebuild --print-errorlogs --num-processes 2 \
  "${names[@]}" | tee "$log" || status=$?
count() {
  local n
  n=$(awk -v k="$1:" 'index($0, k) == 1 { print $NF }' "$log" | tail -n 1)
  echo "${n:-0}"
}
echo "sanitizers: $(( $(count Ok) + $(count "Expected Fail") )) passed, $(( $(count Fail) + $(count Timeout) + $(count "Unexpected Pass") )) failed, $(count Skipped) skipped"
exit "$status"
