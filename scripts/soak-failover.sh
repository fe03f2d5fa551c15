#!/usr/bin/env bash
# Failover soak: jobs run by agents through a Redis Sentinel group whose
# master is SIGKILLed mid-run, then every job's end state is checked.
#
#   scripts/soak-failover.sh [--jobs 100] [--agents 3] [--kills 2]
#                            [--lease 10] [--wait 10] [--backlog 4]
#                            [--kill-when busy|idle]
#                            [--seed N] [--timeout 3600] [--build-dir build]
#                            [--keep]
#
# What runs, all on 127.0.0.1 in a temporary directory:
# - Redis as operators run it for high availability: one master and two
#   replicas (redis-server, no persistence, requirepass/masterauth,
#   min-replicas-to-write 1, min-replicas-max-lag 10) and three sentinels
#   (redis-server --sentinel, quorum 2, down-after-milliseconds 1000,
#   failover-timeout 3000, their own password), master name "mymaster";
# - a git server with Basic auth (tests/testing/git_http_server.py) serving
#   copies of the fixture crates `passing` (two commits) and `failing_test`;
# - the producer (tests/soak/failover.py produce): --jobs jobs, about 1 in
#   10 on the failing crate, enqueued one by one with `ci-queue enqueue`
#   through the sentinel URL with CI_REDIS_MIN_REPLICAS=1, never more than
#   --backlog of them unclaimed, so enqueues go on through the whole run;
#   it records which enqueues WAIT confirmed;
# - --agents agent loops, each running packaging/entrypoint.sh (ci-consume,
#   then ci-build --job) over and over inside `unshare --pid --fork
#   --kill-child`, each run a new pod name (agent<k>-run<n>), with
#   REDIS_URL=redis+sentinel://<s1>,<s2>,<s3>/mymaster, the passwords from
#   REDIS_PASSWORD_FILE and REDIS_SENTINEL_PASSWORD_FILE,
#   CI_REDIS_MIN_REPLICAS=1, CI_LEASE=--lease, CI_WAIT=--wait;
# - --kills times, paced over the run, the master is SIGKILLed: kill i is
#   asked for once the producer has enqueued i/(kills+1) of the jobs (it
#   enqueues no more until then) and the group has recovered from the kill
#   before. The kill is made by the loop of the first agent to finish a job
#   after that, just before that agent starts its next run: the other
#   agents are in the middle of jobs (fetching, building, renewing leases,
#   shipping logs, finalizing) and that one is claiming, with jobs waiting,
#   so the time to the next claim measures the failover, not a build in
#   progress. With --kill-when idle the producer waits for the kill itself
#   instead, and the kill is made by the first loop to finish a run: the
#   agents have run out of jobs and are waiting for one (ci-consume in its
#   claim) when the master dies. Once the
#   sentinels name a new master, the killed server is started again on its
#   port as a replica of it; the next kill waits until both replicas are in
#   sync.
#
# The run ends when the producer is done and every enqueued job has a
# terminal status (or is lost: no status hash) with nothing pending or
# unread, or when that stops changing for 3 leases + 60 s. Then
# tests/soak/failover.py check prints and writes to figures.json:
# - jobs lost, among the enqueues WAIT confirmed (goal 0) and the others;
# - jobs run twice (claimed by more than one agent run) and why: a claim or
#   a finalize lost in the failover window, a lease expired, ...;
# - jobs with more than one terminal status written (goal 0): every "job
#   finalized" line must be the status hash's or have been lost (the job
#   was claimed again after it); the servers must agree at the end;
# - per failover: seconds from the kill to the sentinels' +switch-master and
#   to the next successful claim, and from +switch-master to that claim
#   (goal <= 2 s; more than 10 s is a failure);
# - agent runs that exited with an error (goal 0), those caused by Redis
#   told apart; the writes the agents' WAIT did not confirm.
#
# Exit status: 0 all goals met; 1 a goal violated (a lost confirmed job,
# more than one terminal status, an agent run ended in error, a wrong
# outcome, a claim more than 10 s after +switch-master) or the run timed
# out; 2 usage; 77 a needed tool is missing (redis-server, redis-cli,
# cargo, unshare with PID namespaces, git, python3), which is a failure (1)
# under CI=true.
#
# Tools: $CIAGENT_CI_CONSUME, $CIAGENT_CI_BUILD and $CIAGENT_CI_QUEUE when
# set (the meson test sets them), else ci-consume, ci-build and ci-queue are
# built in --build-dir (configured with meson first if needed). The
# temporary directory is removed unless --keep is given or a goal was
# violated (its path is printed then).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/.." && pwd)

jobs=100
agents=3
kills=2
lease=10
wait_s=10
backlog=4
kill_when=busy
seed=$RANDOM
timeout_s=3600
build_dir=build
keep=0

while (($#)); do
  case $1 in
    --jobs | --agents | --kills | --lease | --wait | --backlog | --kill-when | --seed | --timeout | --build-dir)
      if (($# < 2)); then
        echo "soak-failover: $1 needs a value" >&2
        exit 2
      fi
      case $1 in
        --jobs) jobs=$2 ;;
        --agents) agents=$2 ;;
        --kills) kills=$2 ;;
        --lease) lease=$2 ;;
        --wait) wait_s=$2 ;;
        --backlog) backlog=$2 ;;
        --kill-when) kill_when=$2 ;;
        --seed) seed=$2 ;;
        --timeout) timeout_s=$2 ;;
        --build-dir) build_dir=$2 ;;
      esac
      shift 2
      ;;
    --keep)
      keep=1
      shift
      ;;
    -h | --help) print_help ;;
    *)
      echo "soak-failover: unknown argument $1 (see --help)" >&2
      exit 2
      ;;
  esac
done
for n in "$jobs" "$agents" "$kills" "$lease" "$wait_s" "$backlog" "$seed" "$timeout_s"; do
  if [[ ! $n =~ ^[0-9]+$ ]]; then
    echo "soak-failover: numbers expected, got '$n'" >&2
    exit 2
  fi
done
if [[ $kill_when != busy && $kill_when != idle ]]; then
  echo "soak-failover: --kill-when busy or idle" >&2
  exit 2
fi
if ((jobs < 2 || agents < 1 || lease < 2 || wait_s < 1 || backlog < 1)); then
  echo "soak-failover: --jobs >= 2, --agents >= 1, --lease >= 2, --wait >= 1, --backlog >= 1" >&2
  exit 2
fi

started=$SECONDS
say() { printf '[soak-failover %4ds] %s\n' "$((SECONDS - started))" "$*"; }
# now_epoch: seconds since the epoch, with milliseconds.
now_epoch() { date +%s.%3N; }

# --- tools ---------------------------------------------------------------------

soak_require_tools

consume_bin=${CIAGENT_CI_CONSUME:-}
build_bin=${CIAGENT_CI_BUILD:-}
queue_bin=${CIAGENT_CI_QUEUE:-}
if [[ -z $consume_bin || -z $build_bin || -z $queue_bin ]]; then
  [[ $build_dir == /* ]] || build_dir=$root/$build_dir
  if [[ ! -f $build_dir/build.ninja ]]; then
    meson setup "$build_dir" >/dev/null
  fi
  say "building ci-consume, ci-build and ci-queue in $build_dir"
  ninja -C "$build_dir" tools/ci-consume/ci-consume tools/ci-build/ci-build \
    tools/ci-queue/ci-queue >/dev/null
  consume_bin=$build_dir/tools/ci-consume/ci-consume
  build_bin=$build_dir/tools/ci-build/ci-build
  queue_bin=$build_dir/tools/ci-queue/ci-queue
fi
helper=$root/tests/soak/failover.py

# --- processes and cleanup -----------------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-soak-failover.XXXXXX")
declare -A server_pid=() # data server port -> pid
sentinel_pids=()
sentinel_ports=()
server_ports=()
producer_pid=""
loop_pids=()
failed=0

# shellcheck disable=SC2317  # invoked by trap
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  stop_soak_agents "$tmp"
  stop_pid "$producer_pid"
  for pid in "${sentinel_pids[@]}" "${server_pid[@]}"; do stop_pid "$pid"; done
  lib_cleanup
  if ((keep || failed || rc != 0)); then
    echo "soak-failover: kept $tmp"
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the Sentinel group ---------------------------------------------------------

mkdir -p "$tmp/agents" "$tmp/cache" "$tmp/git" "$tmp/secrets"
(
  umask 077
  head -c 24 /dev/urandom | base64 | tr '+/' '-_' >"$tmp/secrets/redis-password"
  head -c 24 /dev/urandom | base64 | tr '+/' '-_' >"$tmp/secrets/sentinel-password"
)
redis_password=$(cat "$tmp/secrets/redis-password")
sentinel_password=$(cat "$tmp/secrets/sentinel-password")
export SOAK_REDIS_PASSWORD_FILE=$tmp/secrets/redis-password
export SOAK_SENTINEL_PASSWORD_FILE=$tmp/secrets/sentinel-password

# answers PORT PASSWORD: true once the server on PORT answers PING.
answers() {
  [[ $(REDISCLI_AUTH=$2 redis-cli -p "$1" PING 2>/dev/null) == PONG ]]
}

# start_server PORT [MASTER_PORT]: the data server on PORT (a replica of
# MASTER_PORT when given), its config and log in $tmp/server-PORT. Its config
# is written anew each time: the sentinels rewrite it, a restart starts
# from what the soak says.
start_server() {
  local port=$1 dir=$tmp/server-$1 i
  mkdir -p "$dir"
  {
    echo "bind 127.0.0.1"
    echo "port $port"
    echo "dir $dir"
    echo "save \"\""
    echo "appendonly no"
    echo "logfile $dir/redis.log"
    echo "protected-mode no"
    echo "requirepass \"$redis_password\""
    echo "masterauth \"$redis_password\""
    echo "min-replicas-to-write 1"
    echo "min-replicas-max-lag 10"
    if [[ -n ${2:-} ]]; then echo "replicaof 127.0.0.1 $2"; fi
  } >"$dir/redis.conf"
  # Not a job of this shell: bash would report its SIGKILL.
  server_pid[$port]=$(
    setsid redis-server "$dir/redis.conf" </dev/null >/dev/null 2>&1 &
    echo $!
  )
  for ((i = 0; i < 100; i++)); do
    answers "$port" "$redis_password" && return 0
    kill -0 "${server_pid[$port]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "soak-failover: redis-server on port $port did not start:" >&2
  tail -n 5 "$dir/redis.log" >&2 || true
  return 1
}

# start_sentinel K PORT MASTER_PORT
start_sentinel() {
  local dir=$tmp/sentinel$1 port=$2 i
  mkdir -p "$dir"
  cat >"$dir/sentinel.conf" <<EOF
bind 127.0.0.1
port $port
dir $dir
logfile $dir/sentinel.log
protected-mode no
requirepass "$sentinel_password"
sentinel monitor mymaster 127.0.0.1 $3 2
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 3000
sentinel parallel-syncs mymaster 2
sentinel auth-pass mymaster "$redis_password"
sentinel sentinel-pass "$sentinel_password"
EOF
  setsid redis-server "$dir/sentinel.conf" --sentinel </dev/null >/dev/null 2>&1 &
  sentinel_pids+=($!)
  for ((i = 0; i < 100; i++)); do
    answers "$port" "$sentinel_password" && return 0
    sleep 0.1
  done
  echo "soak-failover: sentinel on port $port did not start:" >&2
  tail -n 5 "$dir/sentinel.log" >&2 || true
  return 1
}

for _ in 1 2 3; do
  server_ports+=("$(free_port)")
done
start_server "${server_ports[0]}"
start_server "${server_ports[1]}" "${server_ports[0]}"
start_server "${server_ports[2]}" "${server_ports[0]}"
for k in 1 2 3; do
  port=$(free_port)
  sentinel_ports+=("$port")
  start_sentinel "$k" "$port" "${server_ports[0]}"
done
sentinels=$(
  IFS=,
  echo "${sentinel_ports[*]}"
)
redis_url="redis+sentinel://127.0.0.1:${sentinel_ports[0]},127.0.0.1:${sentinel_ports[1]},127.0.0.1:${sentinel_ports[2]}/mymaster"
if ! master_port=$(python3 "$helper" ready --sentinels "$sentinels" --timeout 60) ||
  ! python3 "$helper" create-group --sentinels "$sentinels"; then
  exit 1
fi

# --- git server and repositories --------------------------------------------------

soak_repositories "$tmp" "$root"
say "master 127.0.0.1:$master_port, replicas $(printf '%s ' "${server_ports[@]}" | sed "s/\b$master_port \?//"), sentinels $sentinels; git http://127.0.0.1:$git_port; dir $tmp"

# --- the producer -------------------------------------------------------------------

REDIS_PASSWORD_FILE=$SOAK_REDIS_PASSWORD_FILE \
  REDIS_SENTINEL_PASSWORD_FILE=$SOAK_SENTINEL_PASSWORD_FILE \
  python3 "$helper" produce --sentinels "$sentinels" --dir "$tmp" \
  --redis-url "$redis_url" --jobs "$jobs" --seed "$seed" --backlog "$backlog" \
  --kills "$kills" --kill-when "$kill_when" \
  --ci-queue "$queue_bin" \
  --pass-repo "http://127.0.0.1:$git_port/soak/passing.git" \
  --pass-commits "$(paste -sd, "$tmp/commits.passing")" \
  --fail-repo "http://127.0.0.1:$git_port/soak/failing.git" \
  --fail-commit "$(cat "$tmp/commits.failing")" \
  </dev/null >"$tmp/producer.out" 2>&1 &
producer_pid=$!

# --- agents ---------------------------------------------------------------------------

# kill_master_if_asked NAME: when the soak asked for a kill ($tmp/kill-request
# holds the master's pid and port), the first loop to take the request
# SIGKILLs that server and records when.
kill_master_if_asked() {
  local taken=$tmp/kill-taken.$1 pid port
  mv "$tmp/kill-request" "$taken" 2>/dev/null || return 0
  read -r pid port <"$taken"
  kill -KILL "$pid" 2>/dev/null || true
  printf '%s\t%s\t%s\n' "$(now_epoch)" "$port" "$1" >>"$tmp/kills.tsv"
}

# agent_loop K: runs the entrypoint, a new pod each time, until told to stop.
# A kill is taken after a run that built a job (any run with --kill-when
# idle): the agent is between two jobs, the others in the middle of theirs.
agent_loop() {
  local k=$1 run=0 pid rc name built=0 size
  local log=$tmp/agents/agent$k.log
  trap - EXIT INT TERM
  while [[ ! -e $tmp/stop ]]; do
    run=$((run + 1))
    name=agent$k-run$run
    if ((built)) || [[ $kill_when == idle ]]; then
      kill_master_if_asked "$name"
    fi
    size=$(stat -c %s "$log" 2>/dev/null || echo 0)
    printf '\n{"soak":"run","consumer":"%s"}\n' "$name" >>"$log"
    env -u REDIS_PASSWORD -u GIT_TOKEN_FILE -u GITEA_TOKEN \
      -u GITEA_TOKEN_FILE -u CI_SECRET_ENV -u CI_TARGET_DIR -u CI_CARGO_HOME \
      -u CI_CARGO_CONFIG -u CI_CA_FILE -u GITEA_URL -u REGISTRY_URL \
      -u CIAGENT_LOG_LEVEL -u CI_RESULT_FILE -u CI_METRICS_FILE \
      -u CI_METRICS_PUSHGATEWAY -u REDIS_SENTINEL_PASSWORD \
      -u SOAK_REDIS_PASSWORD_FILE -u SOAK_SENTINEL_PASSWORD_FILE \
      REDIS_URL="$redis_url" REDIS_PASSWORD_FILE="$tmp/secrets/redis-password" \
      REDIS_SENTINEL_PASSWORD_FILE="$tmp/secrets/sentinel-password" \
      CI_REDIS_MIN_REPLICAS=1 CI_REDIS_WAIT_TIMEOUT=1s POD_NAME="$name" \
      CI_WORKDIR="$tmp/agents/agent$k" CI_CACHE_DIR="$tmp/cache" \
      CI_WAIT="$wait_s" CI_LEASE="$lease" CI_EXIT_CODE=agent \
      CI_IMAGE_BUILDER=none CI_CONSUME_BIN="$consume_bin" \
      CI_BUILD_BIN="$build_bin" GIT_USERNAME=soak GIT_TOKEN="$git_token" \
      unshare --pid --fork --kill-child sh "$root/packaging/entrypoint.sh" \
      </dev/null >>"$tmp/agents/agent$k.out" 2>>"$log" &
    pid=$!
    printf '%s %s\n' "$pid" "$name" >"$tmp/agents/agent$k.pid"
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    rm -f "$tmp/agents/agent$k.pid"
    printf '\n{"soak":"exit","consumer":"%s","rc":%d}\n' "$name" "$rc" >>"$log"
    built=0
    if tail -c +"$((size + 1))" "$log" | grep -q '"msg":"entrypoint: building"'; then
      built=1
    fi
    if ((rc != 0)); then sleep 0.5; fi
  done
}

for ((k = 1; k <= agents; k++)); do
  agent_loop "$k" &
  loop_pids+=($!)
done
say "$agents agents started; lease ${lease} s, wait ${wait_s} s, backlog $backlog, seed $seed"

# --- failovers, until every job is done ---------------------------------------------

killed=0
asked=0
deadline=$((SECONDS + timeout_s))
last_report=0
last_change=$SECONDS
last_progress=""
while true; do
  if ! progress=$(python3 "$helper" progress --sentinels "$sentinels" --dir "$tmp" 2>/dev/null); then
    sleep 0.5
    continue
  fi
  read -r ndone total pending unread missing producer_done <<<"$progress"
  if [[ $progress != "$last_progress" ]]; then
    last_progress=$progress
    last_change=$SECONDS
  fi
  if ((producer_done && total > 0 && ndone + missing == total && pending == 0 && unread == 0 && asked == killed)); then
    break
  fi
  if ((SECONDS > deadline)); then
    say "timed out after ${timeout_s} s: $ndone of $total enqueued jobs done, $pending pending, $unread unread"
    failed=1
    break
  fi
  if ((SECONDS - last_change > 3 * lease + 60 && asked == killed)); then
    say "no progress for $((3 * lease + 60)) s: $ndone of $total enqueued jobs done, $pending pending, $unread unread; checking"
    break
  fi
  if ((SECONDS - last_report >= 15)); then
    say "$ndone/$total done ($jobs planned), $pending pending, $unread unread; $killed of $kills kills"
    last_report=$SECONDS
  fi
  # Kill i once the producer has enqueued i/(kills+1) of the jobs (it
  # enqueues no more until the kill is asked for, or made).
  if ((asked == killed && killed < kills && total >= (killed + 1) * jobs / (kills + 1))); then
    master_port=$(python3 "$helper" master --sentinels "$sentinels")
    printf '%s %s\n' "${server_pid[$master_port]}" "$master_port" >"$tmp/kill-request.new"
    mv "$tmp/kill-request.new" "$tmp/kill-request"
    asked=$((asked + 1))
    echo "$asked" >>"$tmp/kills-asked"
    say "master $master_port to be killed by the next agent loop between runs"
  fi
  if ((asked > killed)) && [[ -e $tmp/kills.tsv ]] && (($(wc -l <"$tmp/kills.tsv") > killed)); then
    killed=$((killed + 1))
    read -r _ old_port by < <(tail -n 1 "$tmp/kills.tsv")
    if ! new_port=$(python3 "$helper" new-master --sentinels "$sentinels" --old "$old_port" --timeout 60); then
      failed=1
      break
    fi
    say "master $old_port killed by $by's loop; the sentinels name $new_port"
    if ! start_server "$old_port" "$new_port" ||
      ! python3 "$helper" ready --sentinels "$sentinels" --timeout 120 >/dev/null; then
      failed=1
      break
    fi
    say "$old_port restarted as a replica of $new_port; both replicas in sync"
  fi
  sleep 0.5
done
if ((failed)); then exit 1; fi
say "done: $killed master kills; stopping the agents"

# The agents find nothing more and exit within CI_WAIT; then the loops end.
: >"$tmp/stop"
stop_pid "$producer_pid"
for pid in "${loop_pids[@]}"; do
  for ((i = 0; i < (wait_s + 20) * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
done
stop_soak_agents "$tmp"
runtime=$((SECONDS - started))

# --- checks ------------------------------------------------------------------------------

check_rc=0
python3 "$helper" check --sentinels "$sentinels" --dir "$tmp" \
  --servers "$(
    IFS=,
    echo "${server_ports[*]}"
  )" || check_rc=$?
((killed == kills)) || {
  echo "  kills                    only $killed of $kills made"
  check_rc=1
}
echo "  runtime                  ${runtime} s (jobs $jobs, agents $agents, kills $kills, lease ${lease} s, wait ${wait_s} s, backlog $backlog, seed $seed)"
if ((check_rc != 0)); then
  failed=1
  echo "FAILOVER SOAK FAILED"
  exit 1
fi
echo "FAILOVER SOAK PASSED"
