#!/bin/sh
# packaging/healthcheck.sh against a real redis-server with a password:
# healthy with the password from a file, from REDIS_PASSWORD and as an ACL
# user in the URL; unhealthy, with the reason, for a wrong password, no
# server, a missing cache dir and a missing tool; no password in any
# output, and nothing left in the cache dir.
#
#   healthcheck_test.sh HEALTHCHECK CI_CONSUME CI_BUILD
#
# Without redis-server or redis-cli: skipped (exit 77), failed under CI=true.
set -eu

if [ $# -ne 3 ]; then
  echo "usage: healthcheck_test.sh HEALTHCHECK CI_CONSUME CI_BUILD" >&2
  exit 2
fi
healthcheck=$1
export CI_CONSUME_BIN="$2" CI_BUILD_BIN="$3"

for tool in redis-server redis-cli; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
      echo "FAIL: $tool not found (CI=true)" >&2
      exit 1
    fi
    echo "SKIP: $tool not found" >&2
    exit 77
  fi
done

dir=$(mktemp -d)
server_pid=""
# shellcheck disable=SC2317  # invoked by trap
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

# A free port: the kernel's choice for a listener that is closed at once.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --requirepass 'pw-default' --user alice on '>pw-alice' '~*' '+@all' \
  >"$dir/redis.log" 2>&1 &
server_pid=$!
tries=0
until redis-cli -p "$port" --no-auth-warning -a pw-default PING 2>/dev/null | grep -q PONG; do
  tries=$((tries + 1))
  if [ "$tries" -gt 50 ]; then
    echo "FAIL: redis-server did not start" >&2
    cat "$dir/redis.log" >&2
    exit 1
  fi
  sleep 0.1
done

mkdir "$dir/cache"
printf 'pw-default' >"$dir/password"
status=0

# expect RC TEXT VAR=VALUE...: runs the healthcheck with those settings only.
expect() {
  want_rc=$1 want_text=$2
  shift 2
  rc=0
  out=$(env -u REDIS_URL -u REDIS_PASSWORD -u REDIS_PASSWORD_FILE -u CI_CACHE_DIR \
    "$@" sh "$healthcheck" 2>&1) || rc=$?
  case $out in
    *pw-default* | *pw-alice* | *wrong-pw*) leaked=1 ;;
    *) leaked=0 ;;
  esac
  if [ "$rc" = "$want_rc" ] && [ "$out" = "$want_text" ] && [ "$leaked" = 0 ]; then
    echo "ok   $want_text"
  else
    echo "FAIL $*: exit $rc, output: $out (want exit $want_rc, $want_text)" >&2
    status=1
  fi
}

url=redis://127.0.0.1:$port
expect 0 healthy REDIS_URL="$url/0" REDIS_PASSWORD_FILE="$dir/password" CI_CACHE_DIR="$dir/cache"
expect 0 healthy REDIS_URL="$url" REDIS_PASSWORD=pw-default
expect 0 healthy REDIS_URL="redis://alice:pw-alice@127.0.0.1:$port/1"
expect 1 "unhealthy: Redis at REDIS_URL refused the password" \
  REDIS_URL="$url" REDIS_PASSWORD=wrong-pw
expect 1 "unhealthy: Redis at REDIS_URL refused the password" REDIS_URL="$url"
expect 1 "unhealthy: Redis at REDIS_URL did not answer PONG (unreachable?)" \
  REDIS_URL=redis://127.0.0.1:1 REDIS_PASSWORD=pw-default
expect 1 "unhealthy: REDIS_URL is not a redis:// URL" REDIS_URL="rediss://127.0.0.1:$port"
expect 1 "unhealthy: the cache dir (CI_CACHE_DIR) does not exist" \
  REDIS_URL="$url" REDIS_PASSWORD=pw-default CI_CACHE_DIR="$dir/none"
expect 1 "unhealthy: no-such-ci-build not found on PATH" \
  REDIS_URL="$url" REDIS_PASSWORD=pw-default CI_BUILD_BIN=no-such-ci-build
[ -z "$(ls -A "$dir/cache")" ] || {
  echo "FAIL: the healthcheck left files in the cache dir" >&2
  status=1
}
exit "$status"
