#!/usr/bin/env bash
# The end-to-end demo: the agent's main job on local defaults, on one machine.
#
#   scripts/demo.sh [BUILD_DIR]     (default: build-demo; a build directory
#                                    that is already configured is reused)
#
# 1. Installs the build dependencies (scripts/bootstrap.sh) and builds
#    ci-consume, ci-build and ci-queue with meson.
# 2. Starts, on free 127.0.0.1 ports, a redis-server, a git server over
#    HTTP with Basic auth (tests/testing/git_http_server.py) that serves the
#    bundled crate examples/hello-ci, committed into a fresh repository,
#    and a container registry (CNCF distribution, Basic auth) for its image.
# 3. Enqueues a job for that commit with `ci-queue enqueue`, as a producer
#    would (the command is printed), then runs the agent's container
#    entrypoint, packaging/entrypoint.sh, against these services.
# 4. Prints the job as `ci-queue show` reads its status hash, the first and
#    last lines of `ci-queue logs`, the queue's `ci-queue stats`, the pushed
#    image's digest (and what the registry says the tag points at, asked
#    with skopeo) and a verdict.
#
# Exit status: 0 only when the job ended `success`; 130 when interrupted
# (Ctrl-C: the agent requeues the job, then everything is stopped).
#
# Needs a Rust toolchain: cargo on PATH or in ~/.cargo/bin (clippy is used
# when installed). Nothing is downloaded but Debian packages.
#
# Environment:
#   GIT_USERNAME  user name on the git server (default: demo)
#   GIT_TOKEN     the token the agent presents to the git server; by default
#                 the server's own, generated for each run and never shown.
#                 Any other value makes the fetch fail: the job ends `error`.
#
# Kept between runs in BUILD_DIR/demo/ (so a second run is warm): the agent's
# git mirror cache, work directory, CARGO_HOME and cargo target directory,
# and, of the last run, the agent's log (agent.log) and ci-build's --result
# JSON (result.json). Services, the repository and Redis data live in a
# temporary directory, removed on exit.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
root=$PWD
build_dir=${1:-build-demo}
build_path=$build_dir
[[ $build_path == /* ]] || build_path=$root/$build_dir
state=$build_path/demo

started=$EPOCHREALTIME
phase_start=$started
say() { printf '\n==> %s\n' "$*"; }
# Seconds since $1, with one decimal.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
phase_done() {
  printf '    (%s s)\n' "$(since "$phase_start")"
  phase_start=$EPOCHREALTIME
}

# --- processes and cleanup ---------------------------------------------------

tmp=""
redis_pid=""
git_pid=""
registry_pid=""
agent_pid=""
follow_pid=""
interrupted=0
signalled=0

# shellcheck disable=SC2317  # invoked by trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$agent_pid"
  stop_pid "$follow_pid"
  stop_pid "$git_pid"
  stop_pid "$registry_pid"
  stop_pid "$redis_pid"
  if [[ -n $tmp ]]; then rm -rf "$tmp"; fi
  exit "$rc"
}
trap cleanup EXIT

# shellcheck disable=SC2317  # invoked by trap
on_signal() {
  interrupted=1
  signalled=1
  if [[ -n $agent_pid ]]; then
    # The agent requeues its job; the services stay up until it has.
    kill -TERM "$agent_pid" 2>/dev/null || true
  else
    exit 130
  fi
}
trap on_signal INT TERM

# --- 1. dependencies, toolchain, build ---------------------------------------

# The toolchain first: without it nothing else is worth installing.
say "Rust toolchain, then dependencies (scripts/bootstrap.sh)"
# A rustup toolchain (in ~/.cargo/bin) wins over a system cargo.
if [[ -x $HOME/.cargo/bin/cargo ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
  cat >&2 <<'EOF'
demo: cargo not found. The demo builds a Rust crate and needs a Rust
toolchain: install one (for example with rustup, which puts cargo in
~/.cargo/bin, or Debian's cargo package), then run scripts/demo.sh again.
EOF
  exit 1
fi
steps='"check","build","test"'
if cargo clippy --version >/dev/null 2>&1; then
  steps+=',"clippy"'
  clippy_note=""
else
  clippy_note=" (clippy is not installed: the job skips it)"
fi
steps+=',"image"'
echo "    $(cargo --version)$clippy_note"
scripts/bootstrap.sh
phase_done

say "build ci-consume, ci-build and ci-queue ($build_dir)"
if [[ ! -f $build_dir/build.ninja ]]; then
  meson setup "$build_dir" -Dtests=disabled -Dintegration_tests=disabled \
    -Dbenchmarks=disabled -Dfuzzers=disabled
fi
ninja -C "$build_dir" tools/ci-consume/ci-consume tools/ci-build/ci-build \
  tools/ci-queue/ci-queue
phase_done

# --- 2. services --------------------------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-demo.XXXXXX")
mkdir -p "$state"

say "services on 127.0.0.1"
# Redis, without persistence, in its own session: Ctrl-C reaches the agent
# but not the services it still needs to requeue its job.
mkdir -p "$tmp/redis"
start_redis "$tmp/redis"
echo "    redis     redis://127.0.0.1:$redis_port (redis-server $(redis-server --version | awk '{sub("v=", "", $3); print $3}'))"

# The bundled crate, committed into a fresh repository. Fixed author and
# dates give the same commit id on every run while the crate is unchanged.
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME="CI demo" GIT_AUTHOR_EMAIL="demo@example.invalid"
export GIT_COMMITTER_NAME="CI demo" GIT_COMMITTER_EMAIL="demo@example.invalid"
export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
example_repository "$tmp" demo

# Basic auth with a token made for this run. The server reads it from a
# file and the agent from its environment: never a command line.
git_user=${GIT_USERNAME:-demo}
server_token=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
(umask 077 && printf '%s:%s\n' "$git_user" "$server_token" >"$tmp/git-auth")
agent_token=${GIT_TOKEN:-$server_token}
if [[ $agent_token == "$server_token" ]]; then
  token_note="the server's token"
else
  token_note="GIT_TOKEN from the environment, not the server's token"
fi

# The port of the last run is preferred: the agent's mirror cache is keyed
# by the repository URL, port included, so reusing it keeps the cache warm.
start_demo_git_server() {  # start_demo_git_server PORT: git_port set, or 1
  start_git_server "$tmp" "$tmp/git" "$1" --auth-file "$tmp/git-auth" \
    --log "$tmp/git-requests.log"
}
last_port=$(cat "$state/git-port" 2>/dev/null || echo 0)
if ! { [[ $last_port =~ ^[1-9][0-9]*$ ]] && start_demo_git_server "$last_port"; }; then
  if ! start_demo_git_server 0; then
    echo "demo: the git server did not start:" >&2
    cat "$tmp/git-server.err" >&2 || true
    exit 1
  fi
fi
echo "$git_port" >"$state/git-port"
repo_url=http://127.0.0.1:$git_port/demo/hello-ci.git
echo "    git       $repo_url (Basic auth, user $git_user; commit ${commit:0:12})"

# The registry: distribution with an htpasswd user and a token made for
# this run (bcrypt through Debian's python3; the agent reads the token from
# its environment, the hash generator from its stdin).
registry_user=demo
registry_token=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
mkdir -p "$tmp/registry"
/usr/bin/python3 -W ignore -c 'import crypt, sys
salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)
print("%s:%s" % (sys.argv[1], crypt.crypt(sys.stdin.read().strip(), salt)))' \
  "$registry_user" <<<"$registry_token" >"$tmp/registry/htpasswd"
registry_port=""
for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 12000))
  printf '%s\n' "version: 0.1" "log: {level: warn}" \
    "storage: {filesystem: {rootdirectory: $tmp/registry/data}}" \
    "http: {addr: 127.0.0.1:$port}" \
    "auth: {htpasswd: {realm: demo, path: $tmp/registry/htpasswd}}" \
    >"$tmp/registry/config.yml"
  setsid docker-registry serve "$tmp/registry/config.yml" \
    </dev/null >"$tmp/registry/registry.log" 2>&1 &
  registry_pid=$!
  for ((i = 0; i < 100; i++)); do
    kill -0 "$registry_pid" 2>/dev/null || break
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/") == 401 ]]; then
      registry_port=$port
      break
    fi
    sleep 0.1
  done
  [[ -z $registry_port ]] || break
  stop_pid "$registry_pid"
  registry_pid=""
done
if [[ -z $registry_port ]]; then
  echo "demo: the registry did not start:" >&2
  tail -n 5 "$tmp/registry/registry.log" >&2 || true
  exit 1
fi
echo "    registry  http://127.0.0.1:$registry_port (CNCF distribution, Basic auth, user $registry_user)"
phase_done

# --- 3. enqueue, as a producer ------------------------------------------------

# ci-queue, as an operator or a producer's script runs it (the command is
# printed first). NO_COLOR: the demo's output is a log, not a terminal UI.
export NO_COLOR=1
ci_queue() {
  "$build_path/tools/ci-queue/ci-queue" --redis "redis://127.0.0.1:$redis_port" "$@"
}
job_id=hello-ci-$(date -u +%Y%m%d-%H%M%S)

say "enqueue job $job_id (status hash queued, then the stream entry)"
echo "    ci-queue enqueue --repo $repo_url --branch main --commit ${commit:0:12}… \\"
echo "      --steps ${steps//\"/} --timeout 600 --job-id $job_id"
ci_queue enqueue --repo "$repo_url" --branch main --commit "$commit" \
  --steps "${steps//\"/}" --timeout 600 --job-id "$job_id" >/dev/null
phase_done

# --- 4. the agent -------------------------------------------------------------

say "agent: packaging/entrypoint.sh (ci-consume, then ci-build --job)"
mkdir -p "$state/cache" "$state/work" "$state/cargo-home" "$state/target"
rm -f "$state/result.json"
cat <<EOF
    REDIS_URL=redis://127.0.0.1:$redis_port  POD_NAME=demo-agent
    CI_WORKDIR=$build_dir/demo/work  CI_CACHE_DIR=$build_dir/demo/cache
    CI_CARGO_HOME=$build_dir/demo/cargo-home  CI_TARGET_DIR=$build_dir/demo/target
    GIT_USERNAME=$git_user  GIT_TOKEN=($token_note)
    REGISTRY_URL=http://127.0.0.1:$registry_port  REGISTRY_USERNAME=$registry_user  REGISTRY_TOKEN=(the registry's)
    agent log: $build_dir/demo/agent.log (JSON lines), summarized below
EOF
(
  # Only the settings chosen here: no secret of the caller's environment.
  unset GIT_TOKEN_FILE GITEA_TOKEN GITEA_TOKEN_FILE REDIS_PASSWORD \
    REDIS_PASSWORD_FILE CI_SECRET_ENV CI_CARGO_CONFIG CI_CA_FILE \
    REGISTRY_TOKEN_FILE GITEA_URL CI_IMAGE_BUILDER
  export REDIS_URL=redis://127.0.0.1:$redis_port POD_NAME=demo-agent \
    CI_WORKDIR=$state/work CI_CACHE_DIR=$state/cache \
    CI_CARGO_HOME=$state/cargo-home CI_TARGET_DIR=$state/target \
    CI_WAIT=10 CI_EXIT_CODE=job CI_RESULT_FILE=$state/result.json \
    CI_CONSUME_BIN=$build_path/tools/ci-consume/ci-consume \
    CI_BUILD_BIN=$build_path/tools/ci-build/ci-build \
    GIT_USERNAME=$git_user \
    REGISTRY_URL=http://127.0.0.1:$registry_port REGISTRY_USERNAME=$registry_user
  export GIT_TOKEN=$agent_token REGISTRY_TOKEN=$registry_token
  exec packaging/entrypoint.sh
) 2>"$state/agent.log" &
agent_pid=$!

# One line per agent log line, while it runs: time, level when not info,
# message, and its fields.
python3 - "$state/agent.log" "$agent_pid" <<'PY' &
import json, os, sys, time

path, pid = sys.argv[1], int(sys.argv[2])

def alive():
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

def show(raw):
    raw = raw.rstrip("\n")
    try:
        entry = json.loads(raw)
    except ValueError:
        print("    | " + raw, flush=True)
        return
    ts = str(entry.pop("ts", ""))[11:23]
    level = entry.pop("level", "")
    msg = entry.pop("msg", "")
    entry.pop("job_id", None)
    fields = " ".join("%s=%s" % (k, v if not isinstance(v, (dict, list)) else json.dumps(v))
                      for k, v in entry.items())
    level = "" if level == "info" else level.upper() + " "
    line = ("    | %s %s%s  %s" % (ts, level, msg, fields)).rstrip()
    print(line[:200] + ("…" if len(line) > 200 else ""), flush=True)

with open(path, encoding="utf-8", errors="replace") as log:
    pending = ""
    while True:
        chunk = log.readline()
        if chunk:
            pending += chunk
            if pending.endswith("\n"):
                show(pending)
                pending = ""
            continue
        if not alive():
            rest = pending + log.read()
            for raw in rest.splitlines():
                show(raw)
            break
        time.sleep(0.2)
PY
follow_pid=$!

# Waits for the agent. A trapped signal ends `wait` early (and the agent is
# told to stop): wait again for its real exit status.
agent_rc=0
while true; do
  signalled=0
  agent_rc=0
  wait "$agent_pid" || agent_rc=$?
  ((signalled)) || break
done
agent_pid=""
wait "$follow_pid" 2>/dev/null || true
follow_pid=""
echo "    entrypoint exit code: $agent_rc"
phase_done

# --- 5. what the job left in Redis --------------------------------------------

say "ci-queue show $job_id"
ci_queue show "$job_id" | sed 's/^/    /'
ci_queue logs "$job_id" >"$tmp/job.log"
log_len=$(wc -l <"$tmp/job.log")
say "ci-queue logs $job_id ($log_len lines: first and last 5)"
if ((log_len > 10)); then
  head -n 5 "$tmp/job.log" | sed 's/^/    /'
  echo "    ..."
  tail -n 5 "$tmp/job.log" | sed 's/^/    /'
else
  sed 's/^/    /' "$tmp/job.log"
fi
say "ci-queue stats"
ci_queue stats | sed 's/^/    /'

# --- verdict ------------------------------------------------------------------

# One field of the job's status hash, from `ci-queue show --json`.
job_field() {
  ci_queue show "$job_id" --json |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1"
}
status=$(job_field status)
reason=$(job_field reason)
total=$(since "$started")
echo
if ((interrupted)); then
  echo "VERDICT: interrupted: job $job_id is '$status' (the agent requeued it); ${total} s"
  exit 130
fi
image=$(job_field image)
image_digest=$(job_field image_digest)
registry_digest=""
if [[ -n $image ]]; then
  # An independent client asks the registry what the tag points at.
  # Credentials in a private auth file: never on a command line.
  (umask 077 && printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' \
    "$registry_port" "$(printf '%s:%s' "$registry_user" "$registry_token" | base64 -w0)" \
    >"$tmp/registry/auth.json")
  registry_digest=$(skopeo inspect --tls-verify=false --raw \
    --authfile "$tmp/registry/auth.json" "docker://$image" | sha256sum |
    awk '{print "sha256:" $1}')
  echo
  echo "    image $image"
  echo "      image_digest in the status  $image_digest"
  echo "      the registry (skopeo)       $registry_digest"
fi
if [[ $status == success && -n $image && $registry_digest == "$image_digest" ]]; then
  passed=$(job_field tests_passed)
  echo "VERDICT: success: job $job_id (commit ${commit:0:12}) passed steps ${steps//\"/} with ${passed:-?} tests passed and pushed $image@$image_digest; entrypoint exit $agent_rc; ${total} s in all"
  exit 0
fi
echo "VERDICT: job $job_id ended '$status'${reason:+: $reason}; entrypoint exit $agent_rc; ${total} s in all"
exit 1
