#!/bin/sh
# Runs shellcheck on the repository's shell scripts.
#
#   tests/packaging/shellcheck.sh SOURCE_ROOT
#
# packaging/entrypoint.sh and packaging/healthcheck.sh are checked as POSIX
# sh (-s sh: the image's /bin/sh is dash, and they must not slip back into
# bash); every scripts/*.sh and tests/**/*.sh as its shebang says. Any
# finding, notes included, fails.
#
# Without shellcheck the test is skipped (exit 77), except under CI=true,
# where that is a failure.
set -eu

if [ $# -ne 1 ]; then
  echo "usage: shellcheck.sh SOURCE_ROOT" >&2
  exit 2
fi
cd "$1"

# Scripts with findings that are not fixed yet stay out of the check until
# fixed; none today.
not_yet_clean=""

if ! command -v shellcheck >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then
    echo "FAIL: shellcheck not found (CI=true: the shell checks must run)" >&2
    exit 1
  fi
  echo "SKIP: shellcheck not found (apt-get install shellcheck)" >&2
  exit 77
fi

status=0
count=0
for script in packaging/entrypoint.sh packaging/healthcheck.sh; do
  count=$((count + 1))
  shellcheck -s sh "$script" || status=1
done

# One script per line from find; split on newlines only, no globbing.
scripts=$(find scripts tests -name '*.sh' -type f -not -path '*/node_modules/*' | LC_ALL=C sort)
set -f
IFS='
'
for script in $scripts; do
  case $not_yet_clean in
    *"
$script
"*)
      echo "skipped (known findings): $script"
      continue
      ;;
  esac
  count=$((count + 1))
  shellcheck "$script" || status=1
done

if [ "$status" = 0 ]; then
  echo "shellcheck: $count scripts clean"
fi
exit "$status"
