#!/bin/sh
# Health of an agent container: can it take and build a job right now?
#
#   1. the tools run: ci-consume and ci-build answer --help (the image's
#      shared libraries and the binaries are intact);
#   2. the cache volume is writable: a file is created and removed under
#      CI_CACHE_DIR (skipped when CI_CACHE_DIR is unset);
#   3. Redis answers PING at REDIS_URL (default redis://127.0.0.1:6379, as
#      ci-consume), within 5 s.
#
# Prints one line, "healthy" or "unhealthy: <why>", and exits 0 or 1.
#
# Settings as the agent's: REDIS_URL, REDIS_PASSWORD[_FILE], CI_CACHE_DIR,
# CI_CONSUME_BIN, CI_BUILD_BIN. The Redis password reaches redis-cli through
# its REDISCLI_AUTH environment variable, never its argv (the process list
# shows argv); a password inside REDIS_URL is taken out of the URL the same
# way. No setting's value is printed.
#
# Docker runs this as the image's HEALTHCHECK. Kubernetes ignores
# HEALTHCHECK; an agent pod lives for one job, so a probe would only ever
# report, not fix: run it by hand (`kubectl exec <pod> -- <this path>`) or as
# an exec probe when debugging a node.
set -eu

unhealthy() {
  echo "unhealthy: $1"
  exit 1
}

# --- the tools --------------------------------------------------------------

for tool in "${CI_CONSUME_BIN:-ci-consume}" "${CI_BUILD_BIN:-ci-build}"; do
  command -v "$tool" >/dev/null 2>&1 || unhealthy "$tool not found on PATH"
  "$tool" --help >/dev/null 2>&1 || unhealthy "$tool --help failed (a missing library?)"
done

# --- the cache volume -------------------------------------------------------

if [ -n "${CI_CACHE_DIR:-}" ]; then
  [ -d "$CI_CACHE_DIR" ] || unhealthy "the cache dir (CI_CACHE_DIR) does not exist"
  probe=$(mktemp "$CI_CACHE_DIR/.healthcheck.XXXXXX" 2>/dev/null) ||
    unhealthy "the cache dir (CI_CACHE_DIR) is not writable"
  rm -f "$probe" || unhealthy "cannot remove a file from the cache dir (CI_CACHE_DIR)"
fi

# --- Redis ------------------------------------------------------------------

command -v redis-cli >/dev/null 2>&1 || unhealthy "redis-cli not found on PATH"

# redis://[user[:password]@]host[:port][/db], the form ci-consume accepts.
url=${REDIS_URL:-redis://127.0.0.1:6379}
case $url in
  redis://*) rest=${url#redis://} ;;
  *) unhealthy "REDIS_URL is not a redis:// URL" ;;
esac
user="" password=""
case $rest in
  *@*)
    userinfo=${rest%@*}
    rest=${rest##*@}
    case $userinfo in
      *:*)
        user=${userinfo%%:*}
        password=${userinfo#*:}
        ;;
      *) user=$userinfo ;;
    esac
    ;;
esac
db=0
case $rest in
  */*)
    db=${rest#*/}
    rest=${rest%%/*}
    ;;
esac
[ -n "$db" ] || db=0
case $rest in
  \[*\]:*) # [IPv6]:port
    host=${rest%]:*}
    host=${host#[}
    port=${rest##*]:}
    ;;
  \[*\])
    host=${rest#[}
    host=${host%]}
    port=6379
    ;;
  *:*)
    host=${rest%:*}
    port=${rest##*:}
    ;;
  *)
    host=$rest
    port=6379
    ;;
esac
[ -n "$host" ] || unhealthy "REDIS_URL has no host"

# As the tools: REDIS_PASSWORD, else REDIS_PASSWORD_FILE, wins over the URL's.
if [ -n "${REDIS_PASSWORD:-}" ]; then
  password=$REDIS_PASSWORD
elif [ -n "${REDIS_PASSWORD_FILE:-}" ]; then
  [ -r "$REDIS_PASSWORD_FILE" ] || unhealthy "REDIS_PASSWORD_FILE is not readable"
  password=$(cat "$REDIS_PASSWORD_FILE")
fi

# --user needs a password given by option; without a user, the password
# goes as plain AUTH through REDISCLI_AUTH.
set -- -h "$host" -p "$port" -n "$db"
if [ -n "$user" ] && [ "$user" != default ]; then
  set -- "$@" --user "$user"
fi
# redis-cli exits 0 on a refused password too: its reply decides.
rc=0
reply=$(REDISCLI_AUTH=$password timeout 5 redis-cli --no-auth-warning "$@" PING 2>&1) ||
  rc=$?
case $reply in
  PONG) ;;
  *NOAUTH* | *WRONGPASS* | *"invalid password"* | *"invalid username"*)
    unhealthy "Redis at REDIS_URL refused the password"
    ;;
  *)
    if [ "$rc" = 124 ]; then
      unhealthy "Redis at REDIS_URL did not answer within 5 s"
    fi
    unhealthy "Redis at REDIS_URL did not answer PONG (unreachable?)"
    ;;
esac

echo healthy
