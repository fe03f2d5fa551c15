#!/usr/bin/env bash
# One job end to end through the aarch64 tools of a cross build, under
# emulation: a native redis-server and git server on 127.0.0.1, the job
# enqueued with redis-cli as a producer would, then packaging/entrypoint.sh
# with an aarch64 ci-consume (claims the job, fetches its commit over HTTP
# with Basic auth) and an aarch64 ci-build (cargo check and test of
# examples/hello-ci, with native cargo), and an aarch64 ci-cache-prune over
# the cache the run left. Passes when the job ends `success` and the pruner
# reports.
#
#   scripts/test-arm64-e2e.sh BUILD_DIR     (a tree of scripts/test-arm64.sh)
#
# The tools are reached through BUILD_DIR/tests/<tool>.wrapped, the scripts
# tests/meson.build writes for cross builds (qemu-aarch64-static -L
# <sysroot> <tool>). Needs redis-server, redis-cli, git, python3 and cargo
# (on PATH or in ~/.cargo/bin). Everything lives in a temporary directory,
# removed on exit.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
prog=e2e
cd "$(dirname "$0")/.."
root=$PWD

case ${1:-} in
  -h | --help) print_help ;;
  "" | -*)
    echo "usage: test-arm64-e2e.sh BUILD_DIR (see --help)" >&2
    exit 2
    ;;
esac
build_dir=$1
[[ $build_dir == /* ]] || build_dir=$root/$build_dir

if [[ -x $HOME/.cargo/bin/cargo ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
for tool in ci-consume ci-build ci-cache-prune; do
  if [[ ! -x $build_dir/tests/$tool.wrapped ]]; then
    echo "e2e: $build_dir/tests/$tool.wrapped missing: not a cross build of scripts/test-arm64.sh" >&2
    exit 2
  fi
done
need_tools "" redis-server redis-cli git python3 cargo
machine=$(LC_ALL=C readelf -h "$build_dir/tools/ci-consume/ci-consume" |
  awk -F: '/Machine:/ { gsub(/^ +/, "", $2); print $2 }')
echo "e2e: ci-consume is built for $machine"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-arm64-e2e.XXXXXX")
cleanup_on_exit "$tmp"

# --- native services ------------------------------------------------------------
mkdir -p "$tmp/redis"
start_redis "$tmp/redis"

export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME="CI arm64" GIT_AUTHOR_EMAIL="arm64@example.invalid"
export GIT_COMMITTER_NAME="CI arm64" GIT_COMMITTER_EMAIL="arm64@example.invalid"
example_repository "$tmp" arm64
token=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
(umask 077 && printf 'ci:%s\n' "$token" >"$tmp/git-auth")
if ! start_git_server "$tmp" "$tmp/git" 0 --auth-file "$tmp/git-auth" \
  --log "$tmp/git-requests.log"; then
  echo "e2e: the git server did not start:" >&2
  cat "$tmp/git-server.err" >&2 || true
  exit 1
fi
repo_url=http://127.0.0.1:$git_port/arm64/hello-ci.git
echo "e2e: redis 127.0.0.1:$redis_port, git $repo_url (commit ${commit:0:12})"

# --- the job, as a producer enqueues it -----------------------------------------
job_id=arm64-e2e
status_key="ci:job:{$job_id}"
now=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
rcli() { redis-cli -p "$redis_port" "$@" >/dev/null; }
rcli XGROUP CREATE ci-jobs ci-workers 0 MKSTREAM
rcli HSET "$status_key" status queued job_id "$job_id" repo "$repo_url" \
  branch main commit "$commit" attempt 0 enqueued_at "$now" updated_at "$now"
rcli XADD ci-jobs '*' job "{\"job_id\":\"$job_id\",\"repo\":\"$repo_url\",\"branch\":\"main\",\"commit\":\"$commit\",\"timeout_s\":900,\"steps\":[\"check\",\"test\"]}"

# --- the agent: aarch64 ci-consume, then aarch64 ci-build --------------------------
mkdir -p "$tmp/cache" "$tmp/work" "$tmp/cargo-home" "$tmp/target"
agent_rc=0
(
  unset GIT_TOKEN_FILE GITEA_TOKEN GITEA_TOKEN_FILE REDIS_PASSWORD \
    REDIS_PASSWORD_FILE CI_SECRET_ENV CI_CARGO_CONFIG CI_CA_FILE \
    REGISTRY_TOKEN_FILE GITEA_URL CI_IMAGE_BUILDER REGISTRY_URL
  # A lease long enough for emulation: renewals come every lease / 3.
  export REDIS_URL=redis://127.0.0.1:$redis_port POD_NAME=arm64-agent \
    CI_WORKDIR=$tmp/work CI_CACHE_DIR=$tmp/cache \
    CI_CARGO_HOME=$tmp/cargo-home CI_TARGET_DIR=$tmp/target \
    CI_WAIT=30 CI_LEASE=180 CI_EXIT_CODE=job \
    CI_RESULT_FILE=$tmp/result.json \
    CI_CONSUME_BIN=$build_dir/tests/ci-consume.wrapped \
    CI_BUILD_BIN=$build_dir/tests/ci-build.wrapped \
    GIT_USERNAME=ci GIT_TOKEN=$token
  exec nice -n 19 packaging/entrypoint.sh
) 2>"$tmp/agent.log" || agent_rc=$?
job_status=$(redis-cli -p "$redis_port" HGET "$status_key" status)
echo "e2e: entrypoint exit code $agent_rc, job status '$job_status'"
if [[ $agent_rc -ne 0 || $job_status != success ]]; then
  echo "e2e: the agent's log:" >&2
  tail -n 40 "$tmp/agent.log" >&2
  exit 1
fi
fetches=$(grep -c 'git-upload-pack' "$tmp/git-requests.log" || true)
echo "e2e: the git server answered $fetches upload-pack requests"

# --- aarch64 ci-cache-prune over what the run left -------------------------------
report=$(nice -n 19 "$build_dir/tests/ci-cache-prune.wrapped" \
  --cache-dir "$tmp/cache" --dry-run --json 2>"$tmp/prune.log")
if ! python3 -c 'import json, sys; json.loads(sys.argv[1])' "$report"; then
  echo "e2e: ci-cache-prune printed no JSON report: $report" >&2
  exit 1
fi
echo "e2e: ci-cache-prune --dry-run: ${report:0:160}"
echo "e2e: passed"
