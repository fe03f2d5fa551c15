#!/bin/sh
# Runs lint.mjs with its npm dependency installed in a build directory.
#
#   run-lint.sh INSTALL_DIR DOCKERFILE
#       lints DOCKERFILE; exits with the linter's status
#   run-lint.sh INSTALL_DIR --expect-failures CASES_DIR
#       every subdirectory of CASES_DIR holds a broken Dockerfile and an
#       expect.txt: the linter must reject each (exit 1) with output
#       containing that line, or this fails
#
# As tests/packaging/k8s/run-validate.sh: the dependency (package.json and
# package-lock.json beside this script, dockerfile-utils pinned) is installed
# with `npm ci` into INSTALL_DIR, never into the source tree, reinstalled
# only when the lockfile changes, under a lock shared by the tests running
# at once. Without node or npm, or when the install fails (no registry), the
# test is skipped (exit 77), except under CI=true, where that is a failure.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
if [ $# -ne 2 ] && [ $# -ne 3 ]; then
  echo "usage: run-lint.sh INSTALL_DIR DOCKERFILE | INSTALL_DIR --expect-failures CASES_DIR" >&2
  exit 2
fi
install_dir=$1
shift

unavailable() {
  if [ "${CI:-}" = true ]; then
    echo "FAIL: $1 (CI=true: the Dockerfile lint must run)" >&2
    exit 1
  fi
  echo "SKIP: $1" >&2
  exit 77
}

command -v node >/dev/null 2>&1 || unavailable "node not found (scripts/bootstrap.sh installs it)"
command -v npm >/dev/null 2>&1 || unavailable "npm not found (scripts/bootstrap.sh installs it)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || unavailable "node $(node --version) is older than 18"
command -v flock >/dev/null 2>&1 || unavailable "flock not found (util-linux)"

mkdir -p "$install_dir"
install() {
  # The copy of the lockfile is written last: it marks a complete install.
  if cmp -s "$here/package-lock.json" "$install_dir/installed.lock" &&
    [ -d "$install_dir/node_modules" ]; then
    return 0
  fi
  rm -f "$install_dir/installed.lock"
  cp "$here/package.json" "$here/package-lock.json" "$install_dir/"
  if ! (cd "$install_dir" && npm ci --no-audit --no-fund --loglevel=error >npm-ci.log 2>&1); then
    cat "$install_dir/npm-ci.log" >&2
    return 1
  fi
  cp "$here/package-lock.json" "$install_dir/installed.lock"
}
exec 9>"$install_dir/.install.lock"
flock 9
install || unavailable "npm ci failed in $install_dir (registry unreachable?)"
flock -u 9

lint() {
  node "$here/lint.mjs" --modules "$install_dir/node_modules" "$@"
}

if [ "$1" != --expect-failures ]; then
  lint "$1"
  exit
fi

cases_dir=$2
status=0
count=0
for dir in "$cases_dir"/*/; do
  [ -d "$dir" ] || continue
  dir=${dir%/}
  name=$(basename "$dir")
  count=$((count + 1))
  if [ ! -f "$dir/expect.txt" ] || [ ! -f "$dir/Dockerfile" ]; then
    echo "FAIL $name: needs a Dockerfile and an expect.txt" >&2
    status=1
    continue
  fi
  expected=$(head -n 1 "$dir/expect.txt")
  rc=0
  output=$(lint "$dir/Dockerfile" 2>&1) || rc=$?
  if [ "$rc" = 0 ]; then
    echo "FAIL $name: the linter accepted a broken Dockerfile" >&2
    status=1
  elif [ "$rc" != 1 ]; then
    echo "FAIL $name: the linter exited $rc (a usage or internal error, not a rejection):" >&2
    echo "$output" >&2
    status=1
  elif ! printf '%s\n' "$output" | grep -qF -- "$expected"; then
    echo "FAIL $name: rejected, but not with: $expected" >&2
    echo "$output" >&2
    status=1
  else
    echo "ok   $name: rejected with: $expected"
  fi
done
if [ "$count" = 0 ]; then
  echo "FAIL: no cases in $cases_dir" >&2
  exit 1
fi
exit "$status"
