#!/usr/bin/env bash
# Runs validate.mjs with its npm dependencies installed in a build directory.
#
#   run-validate.sh INSTALL_DIR MANIFEST_DIR
#       validates MANIFEST_DIR; exits with the validator's status
#   run-validate.sh INSTALL_DIR --expect-failures CASES_DIR
#       every subdirectory of CASES_DIR is a broken manifest set with an
#       expect.txt: the validator must reject each (non-zero exit) with
#       output containing that line, or this fails
#
# The dependencies (package.json, package-lock.json beside this script) are
# installed with `npm ci` into INSTALL_DIR, never into the source tree, and
# reinstalled only when the lockfile changes. Tests running at once share
# one install under a lock.
#
# Without node or npm, or when the install fails (no registry), the test is
# skipped (exit 77), except under CI=true, where that is a failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if (($# != 2 && $# != 3)); then
  echo "usage: run-validate.sh INSTALL_DIR MANIFEST_DIR | INSTALL_DIR --expect-failures CASES_DIR" >&2
  exit 2
fi
install_dir=$1
shift

unavailable() {
  if [[ ${CI:-} == true ]]; then
    echo "FAIL: $1 (CI=true: the manifest checks must run)" >&2
    exit 1
  fi
  echo "SKIP: $1" >&2
  exit 77
}

command -v node >/dev/null 2>&1 || unavailable "node not found (scripts/bootstrap.sh --with-node installs it)"
command -v npm >/dev/null 2>&1 || unavailable "npm not found (scripts/bootstrap.sh --with-node installs it)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
((node_major >= 18)) || unavailable "node $(node --version) is older than 18"

mkdir -p "$install_dir"
install() {
  # The copy of the lockfile is written last: it marks a complete install.
  if cmp -s "$here/package-lock.json" "$install_dir/installed.lock" &&
    [[ -d $install_dir/node_modules ]]; then
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

validate() {
  node "$here/validate.mjs" --modules "$install_dir/node_modules" "$1"
}

if [[ $1 != --expect-failures ]]; then
  validate "$1"
  exit
fi

cases_dir=$2
status=0
count=0
for dir in "$cases_dir"/*/; do
  dir=${dir%/}
  name=$(basename "$dir")
  count=$((count + 1))
  if [[ ! -f $dir/expect.txt ]]; then
    echo "FAIL $name: no expect.txt" >&2
    status=1
    continue
  fi
  expected=$(head -n 1 "$dir/expect.txt")
  rc=0
  output=$(validate "$dir" 2>&1) || rc=$?
  if ((rc == 0)); then
    echo "FAIL $name: the validator accepted a broken manifest set" >&2
    status=1
  elif ((rc != 1)); then
    echo "FAIL $name: the validator exited $rc (a usage or internal error, not a rejection):" >&2
    echo "$output" >&2
    status=1
  elif ! grep -qF -- "$expected" <<<"$output"; then
    echo "FAIL $name: rejected, but not with: $expected" >&2
    echo "$output" >&2
    status=1
  else
    echo "ok   $name: rejected with: $expected"
  fi
done
if ((count == 0)); then
  echo "FAIL: no cases in $cases_dir" >&2
  exit 1
fi
exit "$status"
