#!/usr/bin/env bash
# Runs validate.mjs with its npm dependencies installed in a build directory.
#
#   run-validate.sh INSTALL_DIR MANIFEST_DIR
#       validates MANIFEST_DIR; exits with the validator's status
#   run-validate.sh INSTALL_DIR --render KUSTOMIZATION_DIR
#       renders KUSTOMIZATION_DIR (an overlay of packaging/k8s with its
#       components) with `kustomize build`, or `kubectl kustomize` without a
#       kustomize binary, and validates the result (validate.mjs --rendered)
#   run-validate.sh INSTALL_DIR --expect-failures CASES_DIR
#       every subdirectory of CASES_DIR is a broken manifest set with an
#       expect.txt: the validator must reject each (non-zero exit) with
#       output containing that line, or this fails. A case with a
#       render.txt is an overlay, rendered first as with --render; a build
#       that kustomize refuses is a rejection too, with kustomize's message
#
# The dependencies (package.json, package-lock.json beside this script) are
# installed with `npm ci` into INSTALL_DIR, never into the source tree, and
# reinstalled only when the lockfile changes. Tests running at once share
# one install under a lock.
#
# Without node or npm, or when the install fails (no registry), or without
# kustomize or kubectl for a rendering, the test is skipped (exit 77),
# except under CI=true, where that is a failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if (($# != 2 && $# != 3)); then
  echo "usage: run-validate.sh INSTALL_DIR MANIFEST_DIR | INSTALL_DIR --render KUSTOMIZATION_DIR | INSTALL_DIR --expect-failures CASES_DIR" >&2
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

renderer=()
find_renderer() {
  ((${#renderer[@]} == 0)) || return 0
  if command -v kustomize >/dev/null 2>&1; then
    renderer=(kustomize build)
  elif command -v kubectl >/dev/null 2>&1; then
    renderer=(kubectl kustomize)
  else
    unavailable "neither kustomize nor kubectl found (the components are checked as rendered)"
  fi
}

# Renders an overlay and validates the output; 1 when kustomize refuses it.
render_and_validate() {
  find_renderer
  local out rc=0
  out=$(mktemp)
  "${renderer[@]}" "$1" >"$out" 2>"$out.err" || rc=$?
  if ((rc != 0)); then
    echo "FAIL $(basename "$1"): ${renderer[*]} refused it:" >&2
    cat "$out.err" >&2
    rm -f "$out" "$out.err"
    return 1
  fi
  rc=0
  node "$here/validate.mjs" --modules "$install_dir/node_modules" --rendered "$out" "$1" || rc=$?
  rm -f "$out" "$out.err"
  return "$rc"
}

case $1 in
  --render)
    (($# == 2)) || { echo "run-validate.sh: --render needs a directory" >&2; exit 2; }
    render_and_validate "$2"
    exit
    ;;
  --expect-failures) ;;
  *)
    validate "$1"
    exit
    ;;
esac

cases_dir=$2
status=0
count=0
if compgen -G "$cases_dir/*/render.txt" >/dev/null; then
  find_renderer
fi
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
  if [[ -f $dir/render.txt ]]; then
    output=$(render_and_validate "$dir" 2>&1) || rc=$?
  else
    output=$(validate "$dir" 2>&1) || rc=$?
  fi
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
