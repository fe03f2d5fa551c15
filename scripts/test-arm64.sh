#!/usr/bin/env bash
# The aarch64 pass: cross-builds libciagent, its tools and tests for aarch64
# (g++-aarch64-linux-gnu against an arm64 sysroot of Debian's own :arm64
# packages) and runs them under emulation (qemu-aarch64-static as meson's
# exe_wrapper): the unit suite, the integration tests that need only
# redis-server and the git server, and one job end to end through the
# aarch64 ci-consume, ci-build and ci-cache-prune (scripts/test-arm64-e2e.sh).
# The services stay native processes on 127.0.0.1; only libciagent's
# programs are aarch64. docs/deployment.md ("ARM64") tells the details.
#
#   scripts/test-arm64.sh [--unit-only] [BUILD_DIR]   (default: build-arm64)
#
# Idempotent: installs g++-aarch64-linux-gnu and qemu-user-static when
# missing (and adds the arm64 architecture to dpkg so apt can download
# :arm64 packages), builds the sysroot and the meson cross file once under
# CIAGENT_ARM64_CACHE (default /var/cache/ciagent-arm64, or
# $XDG_CACHE_HOME/ciagent-arm64 when that is not writable), and configures
# BUILD_DIR with that cross file once. No :arm64 package is ever installed:
# libgit2-dev, libsimdjson-dev and libhttp-parser-dev are not Multi-Arch:
# same, and installing their arm64 builds would remove the amd64 ones the
# native build needs. The sysroot is rebuilt when the package list or a
# package's candidate version changes.
#
# --unit-only builds and runs the unit suite only (the short version).
# scripts/bootstrap.sh runs first and installs the cross compiler and qemu
# with the rest (nothing to do when all is there). Heavy steps
# run under `nice -n 19` with two ninja jobs; CIAGENT_ARM64_JOBS changes the
# job count. Timeouts are multiplied by CIAGENT_ARM64_TIMEOUT_MULTIPLIER
# (default 4) for emulation.
set -euo pipefail
prog=test-arm64.sh
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

build_dir=build-arm64
unit_only=0
for arg in "$@"; do
  case $arg in
    --unit-only) unit_only=1 ;;
    -h | --help) print_help ;;
    -*) unknown_option "$arg" ;;
    *) build_dir=$arg ;;
  esac
done

jobs=${CIAGENT_ARM64_JOBS:-2}
multiplier=${CIAGENT_ARM64_TIMEOUT_MULTIPLIER:-4}
triplet=aarch64-linux-gnu

# The -dev packages of every dependency in meson.build (and the C/C++
# runtime to link against); their library dependencies are resolved by apt.
# Keep in step with scripts/bootstrap.sh's build and test packages.
sysroot_packages=(
  libc6-dev libstdc++-12-dev
  libabsl-dev libhiredis-dev libsimdjson-dev libssl-dev
  libcurl4-openssl-dev libgit2-dev zlib1g-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev
)
host_packages=(g++-aarch64-linux-gnu qemu-user-static)

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# --- host tools -------------------------------------------------------------
scripts/bootstrap.sh "${host_packages[@]}"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "test-arm64: dpkg --add-architecture arm64"
  $sudo dpkg --add-architecture arm64
fi
# apt knows no :arm64 package until its lists have been fetched once.
if ! apt-cache show libc6:arm64 >/dev/null 2>&1; then $sudo apt-get update -qq; fi

# --- sysroot ----------------------------------------------------------------
cache=${CIAGENT_ARM64_CACHE:-}
if [[ -z $cache ]]; then
  cache=/var/cache/ciagent-arm64
  if ! mkdir -p "$cache" 2>/dev/null || [[ ! -w $cache ]]; then
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/ciagent-arm64
  fi
fi
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
sysroot=$cache/sysroot
cross_file=$cache/$triplet.ini
# The sysroot is keyed by the package list and the versions apt would pick.
key=$(printf '%s\n' "${sysroot_packages[@]}" |
  sed 's/$/:arm64/' | xargs apt-cache policy 2>/dev/null |
  awk '/^[^ ]/ { p = $1 } /Candidate:/ { print p, $2 }' | sha256sum | cut -c1-16)

if [[ ! -f $sysroot/.ciagent-key || $(cat "$sysroot/.ciagent-key") != "$key" ]]; then
  echo "test-arm64: building the arm64 sysroot in $sysroot"
  work=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  # The dependency closure, arm64 packages and architecture-independent
  # ones (whose files some -dev packages need, e.g. googletest's headers
  # come with libgtest-dev:arm64 itself); native packages are left out.
  mapfile -t closure < <(
    printf '%s:arm64\n' "${sysroot_packages[@]}" |
      xargs apt-cache depends --recurse --no-recommends --no-suggests \
        --no-conflicts --no-breaks --no-replaces --no-enhances |
      grep '^[a-z0-9]' | sort -u)
  download=()
  for pkg in "${closure[@]}"; do
    if [[ $pkg == *:arm64 ]]; then
      download+=("$pkg")
    elif apt-cache show --no-all-versions "$pkg" 2>/dev/null |
      grep -qx 'Architecture: all'; then
      download+=("$pkg")
    fi
  done
  mkdir -p "$work/debs" "$work/root"
  # apt-get download writes into the current directory; as root it warns
  # that the download is not sandboxed, which is expected here.
  (
    cd "$work/debs"
    apt-get download -qq "${download[@]}" 2>&1 | grep -v 'unsandboxed as root'
  ) || true
  debs=("$work"/debs/*.deb)
  if ((${#debs[@]} != ${#download[@]})); then
    echo "test-arm64: downloaded ${#debs[@]} of ${#download[@]} packages" >&2
    exit 1
  fi
  for deb in "${debs[@]}"; do
    dpkg-deb -x "$deb" "$work/root"
  done
  root=$work/root
  # Debian 12 systems have a merged /usr; the packages still ship some files
  # under /lib. Merge them so that every path (linker scripts, symlinks, the
  # dynamic loader qemu looks for) resolves the same way.
  for dir in bin sbin lib; do
    if [[ -d $root/$dir && ! -L $root/$dir ]]; then
      mkdir -p "$root/usr/$dir"
      cp -a "$root/$dir/." "$root/usr/$dir/"
      rm -rf "${root:?}/$dir"
      ln -s "usr/$dir" "$root/$dir"
    fi
  done
  # Absolute symlinks (libz.so -> /lib/...) would point into the host:
  # make them relative to the sysroot.
  while IFS= read -r -d '' link; do
    target=$(readlink "$link")
    if [[ $target == /* ]]; then
      ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$root$target")" "$link"
    fi
  done < <(find "$root" -type l -print0)
  echo "$key" >"$root/.ciagent-key"
  rm -rf "$sysroot"
  mv "$root" "$sysroot"
  rm -rf "$work"
  trap - EXIT
  echo "test-arm64: sysroot ready (${#download[@]} packages)"
fi

# QEMU 7.2 answers EINVAL to prctl PR_SET_CHILD_SUBREAPER, which ci-build
# and the process runner need (a real arm64 kernel has it since 3.4). Every
# emulated program is started through subreaper_exec, which makes the
# process a real subreaper natively before exec'ing QEMU, and with
# subreaper_shim.so preloaded, which answers the two prctl options as the
# kernel would for it (scripts/cross/). Rebuilt when their sources change.
helpers_key=$(cat scripts/cross/subreaper_exec.cc scripts/cross/subreaper_shim.cc |
  sha256sum | cut -c1-16)
if [[ ! -f $cache/helpers.key || $(cat "$cache/helpers.key") != "$helpers_key" ]]; then
  echo "test-arm64: building the emulation helpers in $cache"
  nice -n 19 g++ -O2 -Wall -Wextra -Werror -o "$cache/subreaper_exec" \
    scripts/cross/subreaper_exec.cc
  nice -n 19 "$triplet-g++" --sysroot="$sysroot" -O2 -Wall -Wextra -Werror \
    -shared -fPIC -o "$cache/subreaper_shim.so" \
    scripts/cross/subreaper_shim.cc -ldl
  echo "$helpers_key" >"$cache/helpers.key"
fi

# The meson cross file: machine-specific (the sysroot's path), so written
# here rather than kept in the tree. The tests reach aarch64 programs they
# start themselves (ci-consume, ...) through the exe_wrapper too: see
# tests/meson.build.
cat >"$cross_file.tmp" <<EOF
# Written by scripts/test-arm64.sh: aarch64 against the arm64 sysroot below.
[constants]
sysroot = '$sysroot'
wrapper = ['$cache/subreaper_exec', 'qemu-aarch64-static', '-L', sysroot,
           '-E', 'LD_PRELOAD=$cache/subreaper_shim.so']

[binaries]
c = ['$triplet-gcc', '--sysroot=' + sysroot]
cpp = ['$triplet-g++', '--sysroot=' + sysroot]
ar = '$triplet-gcc-ar'
strip = '$triplet-strip'
pkgconfig = 'pkg-config'
exe_wrapper = wrapper

[properties]
sys_root = sysroot
# The same, for the programs a test starts itself (tests/meson.build).
test_exec_wrapper = wrapper
pkg_config_libdir = sysroot + '/usr/lib/$triplet/pkgconfig:' + sysroot + '/usr/share/pkgconfig'

[host_machine]
system = 'linux'
cpu_family = 'aarch64'
cpu = 'armv8-a'
endian = 'little'
EOF
if cmp -s "$cross_file.tmp" "$cross_file"; then
  rm "$cross_file.tmp"
else
  mv "$cross_file.tmp" "$cross_file"
fi

# --- configure, build ----------------------------------------------------------
# The integration tests that need nothing but redis-server, the git server
# (python3 + git) and the programs of this build. The others need cargo,
# buildah, a registry or a Pushgateway; the library code they reach is
# covered on aarch64 by the unit suite and these, and they stay with the
# native pass.
integration_subset=(
  testing/git_server_test
  queue/redis_client_test
  queue/job_queue_test
  queue/ci_consume_test
  queue/queue_admin_test
  queue/redis_tls_test
  git/ci_consume_fetch_test
  git/fetch_test
  git/fetch_tls_test
  git/fetch_faults_test
  hostile/hostile_jobs_test
  agent/log_shipper_test
)
if ((unit_only)); then integration_subset=(); fi

started=$SECONDS
if [[ ! -f $build_dir/build.ninja ]]; then
  # -O1 without debug information: the cross build is this pass's longest
  # step, and -O1 still optimizes (code that relies on UB or on a char's
  # sign misbehaves at -O1 as at -O2).
  meson setup "$build_dir" --cross-file "$cross_file" -Dwerror=true \
    -Doptimization=1 -Ddebug=false \
    -Dtests=enabled -Dintegration_tests=enabled \
    -Dbenchmarks=disabled -Dfuzzers=disabled
fi
# meson's introspection describes the tree as last generated: regenerate
# first when a meson.build changed (a new test would be missed otherwise).
nice -n 19 ninja -C "$build_dir" build.ninja >/dev/null
# Only what the chosen tests run, plus the three tools: their programs and
# the ones they start (meson's own lists, from `meson introspect`).
plan=$(meson introspect "$build_dir" --tests --targets |
  python3 -c '
import json, os, sys
root, names = os.path.realpath(sys.argv[1]), set(sys.argv[2:])
info = json.load(sys.stdin)
files = {t["id"]: t["filename"] for t in info["targets"]}
def here(path):
    path = os.path.realpath(path)
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else None
targets = {here(f) for t in info["targets"]
           if t["name"] in ("ci-consume", "ci-build", "ci-cache-prune")
           for f in t["filename"]}
tests = []
for test in info["tests"]:
    unit = any(s.split(":")[-1] == "unit" for s in test["suite"])
    if test["name"] not in names and not unit:
        continue
    tests.append(("integration " if test["name"] in names else "unit ") + test["name"])
    paths = [test["cmd"][0]] + [f for d in test["depends"] for f in files.get(d, [])]
    targets.update(filter(None, map(here, paths)))
missing = names - {t.split()[1] for t in tests}
if missing:
    sys.exit("test-arm64.sh: no such test: " + " ".join(sorted(missing)))
for target in sorted(filter(None, targets)):
    print("build", target)
for test in tests:
    print(test)
' "$build_dir" "${integration_subset[@]}")
mapfile -t targets < <(sed -n 's/^build //p' <<<"$plan")
mapfile -t unit < <(sed -n 's/^unit //p' <<<"$plan")
mapfile -t integration < <(sed -n 's/^integration //p' <<<"$plan")
nice -n 19 ninja -C "$build_dir" -j "$jobs" "${targets[@]}"
build_seconds=$((SECONDS - started))

# --- tests under emulation -------------------------------------------------------
log=$(mktemp)
trap 'rm -f "$log"' EXIT
count() {
  local n
  n=$(awk -v k="$1:" 'index($0, k) == 1 { print $NF }' "$log" | tail -n 1)
  echo "${n:-0}"
}
passed=0 failed=0 skipped=0  # over every part, for the closing line
# summary LABEL SECONDS: appends the counts of the meson test run in $log to
# `results` and adds them to the totals (not in a subshell: it sets both).
summary() {
  local p f k
  p=$(($(count Ok) + $(count "Expected Fail")))
  f=$(($(count Fail) + $(count Timeout) + $(count "Unexpected Pass")))
  k=$(count Skipped)
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + k))
  results+=("$1: $p passed, $f failed, $k skipped in $2 s")
}
status=0

started=$SECONDS
nice -n 19 meson test -C "$build_dir" --no-rebuild --print-errorlogs \
  --num-processes "$jobs" --timeout-multiplier "$multiplier" "${unit[@]}" |
  tee "$log" || status=1
results=("build: $build_seconds s")
summary unit $((SECONDS - started))

if ((!unit_only)); then
  started=$SECONDS
  # CI=true: a missing service fails its test instead of skipping it.
  CI=true nice -n 19 meson test -C "$build_dir" --no-rebuild \
    --print-errorlogs --timeout-multiplier "$multiplier" "${integration[@]}" |
    tee "$log" || status=1
  summary integration $((SECONDS - started))

  started=$SECONDS
  if scripts/test-arm64-e2e.sh "$build_dir"; then
    results+=("end to end: passed in $((SECONDS - started)) s")
    passed=$((passed + 1))
  else
    results+=("end to end: FAILED in $((SECONDS - started)) s")
    failed=$((failed + 1))
    status=1
  fi
fi

echo
echo "test-arm64 (aarch64 under qemu-user, $build_dir):"
printf '  %s\n' "${results[@]}"
echo "arm64: $passed passed, $failed failed, $skipped skipped"
exit "$status"
