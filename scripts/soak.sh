#!/usr/bin/env bash
# Soak test of the agent under chaos: many jobs, several agents in a loop,
# agents SIGKILLed with their whole build tree at random moments, Redis
# killed and restarted once; then every job's end state is checked.
#
#   scripts/soak.sh [--jobs 200] [--agents 4] [--kills 50] [--freezes K/10]
#                   [--lease 5] [--poison-pill BYTES]
#                   [--max-deliveries 20] [--seed N] [--steps test]
#                   [--timeout 3600] [--build-dir build] [--keep]
#
# What runs, all on 127.0.0.1 in a temporary directory:
# - redis-server with persistence (appendonly yes, appendfsync always) and a
#   MONITOR transcript of every command it runs (tests/soak/soak.py monitor:
#   redis-cli cannot read a 300 MB MONITOR line);
# - a git server with Basic auth (tests/testing/git_http_server.py) serving
#   copies of the fixture crates `passing` (two commits, the second with
#   another build cache key) and `failing_test`;
# - the producer (tests/soak/soak.py enqueue): --jobs jobs on those crates,
#   about 1 in 10 on the failing one, 1 in 100 well-formed but unfetchable
#   (a branch full of shell syntax), and 1 in 25 malformed (invalid JSON,
#   no commit, job_id `../x`, a branch with spaces and shell metacharacters);
#   with --poison-pill BYTES also one entry whose `job` is BYTES long (e.g.
#   300000000), which must be dead-lettered unread; the agents then run
#   under `ulimit -v 1572864` (1.5 GiB of address space, a pod's limit);
# - --agents agent loops, each running packaging/entrypoint.sh (ci-consume,
#   then ci-build --job) over and over inside `unshare --pid --fork
#   --kill-child`, so a SIGKILL to it ends the agent and every process it
#   started at once, as when a pod's container dies. Each run is a new pod
#   name (agent<k>-run<n>); the git mirror and build cache are shared, the
#   work directory is per agent and kept between runs;
# - the chaos loop: every 1-4 s (paced over the run's progress) SIGKILL of
#   a random running agent, --kills times in all; --freezes times a
#   running agent is frozen (SIGSTOP to its whole tree) for the lease plus
#   3 s and thawed, so its job is reclaimed while it still lives and its
#   late writes must be refused; once, about half-way, Redis is SIGKILLed
#   and restarted on the same port and data.
#
# The run ends when every well-formed job has a terminal status and nothing
# is pending or unread; then tests/soak/soak.py check verifies that
# - every well-formed job has the terminal status its crate calls for
#   (success, failed; error for the unfetchable ones), with test counts;
# - it was written exactly once, by the script call of the agent that held
#   the job's latest claim (replayed from the MONITOR transcripts), and each
#   entry was acknowledged exactly once;
# - no agent logged a status write for a job after losing its lease, and
#   each "job finalized" log line matches the hash's consumer and attempt;
# - every malformed entry is in ci-jobs:dead once, with its reason;
# - the pending list is empty and the group has read every entry;
# - no branch ran a shell command;
# and this script checks that no process is left that belongs to the soak.
# The figures are printed (and kept in figures.json).
#
# Exit status: 0 all checks passed; 1 a check failed (or the run timed
# out); 2 usage; 77 a needed tool is missing (redis-server, redis-cli,
# cargo, unshare with PID namespaces, git, python3), which is a failure (1)
# under CI=true.
#
# Tools: $CIAGENT_CI_CONSUME and $CIAGENT_CI_BUILD when set (the meson
# test sets them), else ci-consume and ci-build are built in --build-dir
# (configured with meson first if needed). cargo is taken from PATH or
# ~/.cargo/bin. The temporary directory is removed unless --keep is given
# or a check failed (its path is printed then).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/.." && pwd)

jobs=200
agents=4
kills=50
freezes=""
lease=5
max_deliveries=20
seed=$RANDOM
steps='test'
timeout_s=3600
build_dir=build
keep=0
poison_pill=""

usage() { sed -n '2,/^set -euo/{/^set /d;s/^# \{0,1\}//;p}' "$0"; }
while (($#)); do
  case $1 in
    --jobs | --agents | --kills | --freezes | --lease | --max-deliveries | --seed | --steps | --timeout | --build-dir | --poison-pill)
      if (($# < 2)); then
        echo "soak: $1 needs a value" >&2
        exit 2
      fi
      case $1 in
        --jobs) jobs=$2 ;;
        --agents) agents=$2 ;;
        --kills) kills=$2 ;;
        --freezes) freezes=$2 ;;
        --lease) lease=$2 ;;
        --max-deliveries) max_deliveries=$2 ;;
        --seed) seed=$2 ;;
        --steps) steps=$2 ;;
        --timeout) timeout_s=$2 ;;
        --build-dir) build_dir=$2 ;;
        --poison-pill) poison_pill=$2 ;;
      esac
      shift 2
      ;;
    --keep)
      keep=1
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "soak: unknown argument $1 (see --help)" >&2
      exit 2
      ;;
  esac
done
freezes=${freezes:-$(((kills + 9) / 10))}
for n in "$jobs" "$agents" "$kills" "$freezes" "$lease" "$max_deliveries" "$seed" "$timeout_s" ${poison_pill:+"$poison_pill"}; do
  if [[ ! $n =~ ^[0-9]+$ ]]; then
    echo "soak: numbers expected, got '$n'" >&2
    exit 2
  fi
done
if ((jobs < 8 || agents < 1 || lease < 1)); then
  echo "soak: --jobs >= 8, --agents >= 1, --lease >= 1" >&2
  exit 2
fi
RANDOM=$seed

started=$SECONDS
say() { printf '[soak %4ds] %s\n' "$((SECONDS - started))" "$*"; }

# --- tools ---------------------------------------------------------------------

soak_require_tools

consume_bin=${CIAGENT_CI_CONSUME:-}
build_bin=${CIAGENT_CI_BUILD:-}
if [[ -z $consume_bin || -z $build_bin ]]; then
  [[ $build_dir == /* ]] || build_dir=$root/$build_dir
  if [[ ! -f $build_dir/build.ninja ]]; then
    meson setup "$build_dir" >/dev/null
  fi
  say "building ci-consume and ci-build in $build_dir"
  ninja -C "$build_dir" tools/ci-consume/ci-consume tools/ci-build/ci-build >/dev/null
  consume_bin=$build_dir/tools/ci-consume/ci-consume
  build_bin=$build_dir/tools/ci-build/ci-build
fi
helper=$root/tests/soak/soak.py

# --- processes and cleanup -----------------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-soak.XXXXXX")
redis_pid=""
monitor_pid=""
git_pid=""
loop_pids=()
failed=0

# shellcheck disable=SC2317  # invoked by trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_soak_agents "$tmp"
  stop_pid "$monitor_pid"
  stop_pid "$git_pid"
  stop_pid "$redis_pid"
  if ((keep || failed || rc != 0)); then
    echo "soak: kept $tmp"
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- redis -----------------------------------------------------------------------

mkdir -p "$tmp/redis" "$tmp/agents" "$tmp/cache" "$tmp/git"
redis_port=""
redis_lives=0
sock=$tmp/redis/redis.sock

# start_redis PORT: starts redis-server on a unix socket only, attaches a
# MONITOR (so it sees every command from the first), then opens PORT.
start_redis() {
  local i
  redis_lives=$((redis_lives + 1))
  setsid redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 \
    --bind 127.0.0.1 --dir "$tmp/redis" --appendonly yes \
    --appendfsync always --save "" --logfile "$tmp/redis/redis.log" \
    </dev/null >/dev/null 2>&1 &
  redis_pid=$!
  for ((i = 0; i < 300; i++)); do
    [[ $(redis-cli -s "$sock" PING 2>/dev/null) == PONG ]] && break
    kill -0 "$redis_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  python3 "$helper" monitor --socket "$sock" \
    --out "$tmp/redis/monitor.$redis_lives.txt" 2>/dev/null &
  monitor_pid=$!
  for ((i = 0; i < 100; i++)); do
    redis-cli -s "$sock" CLIENT LIST 2>/dev/null | grep -q 'cmd=monitor' && break
    sleep 0.05
  done
  [[ $(redis-cli -s "$sock" CONFIG SET port "$1" 2>&1) == OK ]]
}

for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 12000))
  if start_redis "$port"; then
    redis_port=$port
    break
  fi
  stop_pid "$monitor_pid"
  stop_pid "$redis_pid"
  rm -f "$tmp"/redis/monitor.*.txt
  redis_lives=0
done
if [[ -z $redis_port ]]; then
  echo "soak: redis-server did not start:" >&2
  tail -n 5 "$tmp/redis/redis.log" >&2 || true
  exit 1
fi

# Kills Redis (after letting the MONITOR catch up) and starts it again on the
# same port and data; the agents see their connections drop.
restart_redis() {
  local down_ms=$((1000 + RANDOM % 2000))
  # A paused Redis runs no writes, so the transcript is complete when it dies.
  redis-cli -s "$sock" CLIENT PAUSE 3000 WRITE >/dev/null 2>&1 || true
  sleep 0.3
  kill -KILL "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  wait "$monitor_pid" 2>/dev/null || true
  sleep "$(printf '%d.%03d' $((down_ms / 1000)) $((down_ms % 1000)))"
  if ! start_redis "$redis_port"; then
    echo "soak: redis-server did not come back on port $redis_port" >&2
    tail -n 5 "$tmp/redis/redis.log" >&2 || true
    return 1
  fi
  printf '%s\t%s\n' "$(date -u +%FT%T.%3NZ)" "$down_ms" >>"$tmp/restarts.tsv"
  say "redis killed and restarted (down ${down_ms} ms)"
}

# --- git server and repositories --------------------------------------------------

soak_repositories "$tmp" "$root"
say "redis 127.0.0.1:$redis_port (appendonly, fsync always), git http://127.0.0.1:$git_port (Basic auth), dir $tmp"

# --- the producer -------------------------------------------------------------------

python3 "$helper" enqueue --port "$redis_port" --dir "$tmp" --jobs "$jobs" \
  --seed "$seed" --steps "$steps" \
  --pass-repo "http://127.0.0.1:$git_port/soak/passing.git" \
  --pass-commits "$(paste -sd, "$tmp/commits.passing")" \
  --fail-repo "http://127.0.0.1:$git_port/soak/failing.git" \
  --fail-commit "$(cat "$tmp/commits.failing")" \
  ${poison_pill:+--poison-pill "$poison_pill"} | sed 's/^/[soak] /'

# --- agents ---------------------------------------------------------------------------

# agent_loop K: runs the entrypoint, a new pod each time, until told to stop.
agent_loop() {
  local k=$1 run=0 pid rc name
  local log=$tmp/agents/agent$k.log
  trap - EXIT INT TERM
  while [[ ! -e $tmp/stop ]]; do
    run=$((run + 1))
    name=agent$k-run$run
    printf '\n{"soak":"run","consumer":"%s"}\n' "$name" >>"$log"
    (
      # A pod's memory limit, so that an agent receiving the pill would die.
      if [[ -n $poison_pill ]]; then ulimit -v 1572864; fi
      exec env -u REDIS_PASSWORD -u REDIS_PASSWORD_FILE -u GIT_TOKEN_FILE \
        -u GITEA_TOKEN -u GITEA_TOKEN_FILE -u CI_SECRET_ENV -u CI_TARGET_DIR \
        -u CI_CARGO_HOME -u CI_CARGO_CONFIG -u CI_CA_FILE -u GITEA_URL \
        -u REGISTRY_URL -u CIAGENT_LOG_LEVEL -u CI_RESULT_FILE \
        -u CI_METRICS_FILE -u CI_METRICS_PUSHGATEWAY \
        REDIS_URL="redis://127.0.0.1:$redis_port" POD_NAME="$name" \
        CI_WORKDIR="$tmp/agents/agent$k" CI_CACHE_DIR="$tmp/cache" \
        CI_WAIT=2 CI_LEASE="$lease" CI_MAX_DELIVERIES="$max_deliveries" \
        CI_EXIT_CODE=agent CI_IMAGE_BUILDER=none \
        CI_CONSUME_BIN="$consume_bin" CI_BUILD_BIN="$build_bin" \
        GIT_USERNAME=soak GIT_TOKEN="$git_token" \
        unshare --pid --fork --kill-child sh "$root/packaging/entrypoint.sh"
    ) </dev/null >>"$tmp/agents/agent$k.out" 2>>"$log" &
    pid=$!
    printf '%s %s\n' "$pid" "$name" >"$tmp/agents/agent$k.pid"
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    rm -f "$tmp/agents/agent$k.pid"
    printf '\n{"soak":"exit","consumer":"%s","rc":%d}\n' "$name" "$rc" >>"$log"
    # Exit 1 (Redis unreachable, requeued) and 2 (Redis refused us during a
    # restart) are retried like a pod's restart, a little later.
    if ((rc != 0)); then sleep 0.5; fi
  done
}

for ((k = 1; k <= agents; k++)); do
  agent_loop "$k" &
  loop_pids+=($!)
done
say "$agents agents started; lease ${lease} s, max deliveries $max_deliveries, steps $steps, seed $seed"

# pick_running_agent: sets the caller's pid and name to those of a random
# running agent (its unshare process). Returns 1 when none is running.
pick_running_agent() {
  local candidates=() f
  for f in "$tmp"/agents/agent*.pid; do
    [[ -e $f ]] && candidates+=("$f")
  done
  ((${#candidates[@]})) || return 1
  f=${candidates[RANDOM % ${#candidates[@]}]}
  read -r pid name 2>/dev/null <"$f" || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == unshare ]]
}

# kill_random_agent: SIGKILL to one running agent (its unshare process: the
# whole PID namespace dies with it). Returns 1 when none is running.
kill_random_agent() {
  local pid name
  pick_running_agent || return 1
  kill -KILL "$pid" 2>/dev/null || return 1
  printf '%s\t%s\n' "$(date -u +%FT%T.%3NZ)" "$name" >>"$tmp/kills.tsv"
  return 0
}

# freeze_random_agent: SIGSTOP to every process of one running agent; the
# chaos loop sends SIGCONT after the lease plus 3 s (thaw_due).
thaw_at=()   # per freeze: when to thaw (SECONDS), "" once thawed
thaw_tree=() # per freeze: the pids, space-separated
freeze_random_agent() {
  local f pid name tree=() proc stat ppid i
  pick_running_agent || return 1
  # The tree under the unshare process, parents first.
  declare -A children=()
  for proc in /proc/[0-9]*/stat; do
    read -r stat 2>/dev/null <"$proc" || continue
    read -r _ ppid _ <<<"${stat##*) }"
    f=${proc#/proc/}
    children[$ppid]+=" ${f%/stat}"
  done
  tree=("$pid")
  for ((i = 0; i < ${#tree[@]}; i++)); do
    # shellcheck disable=SC2206  # pids: split on spaces
    tree+=(${children[${tree[i]}]:-})
  done
  kill -STOP "${tree[@]}" 2>/dev/null || true
  printf '%s\t%s\t%d\n' "$(date -u +%FT%T.%3NZ)" "$name" "${#tree[@]}" >>"$tmp/freezes.tsv"
  thaw_at+=($((SECONDS + lease + 3)))
  thaw_tree+=("${tree[*]}")
  return 0
}

# thaw_due [all]: SIGCONT to the frozen agents whose time has come (or all).
thaw_due() {
  local i
  for i in "${!thaw_at[@]}"; do
    [[ -n ${thaw_at[i]} ]] || continue
    if [[ ${1:-} == all ]] || ((SECONDS >= thaw_at[i])); then
      # shellcheck disable=SC2086  # pids: split on spaces
      kill -CONT ${thaw_tree[i]} 2>/dev/null || true
      thaw_at[i]=""
    fi
  done
}

# --- the chaos loop, until the queue is drained ---------------------------------------

killed=0
frozen=0
restarted=0
restart_at=$((30 + RANDOM % 40)) # percent of the well-formed jobs done
next_kill=$((SECONDS + 1 + RANDOM % 4))
deadline=$((SECONDS + timeout_s))
last_report=0
while true; do
  if ! progress=$(python3 "$helper" progress --port "$redis_port" --dir "$tmp" 2>/dev/null); then
    sleep 0.5
    continue
  fi
  read -r ndone total pending unread <<<"$progress"
  if ((ndone == total && pending == 0 && unread == 0)); then
    break
  fi
  if ((SECONDS > deadline)); then
    say "timed out after ${timeout_s} s: $ndone of $total jobs done, $pending pending, $unread unread"
    failed=1
    break
  fi
  if ((SECONDS - last_report >= 15)); then
    say "$ndone/$total done, $pending pending, $unread unread; $killed kills, $frozen freezes, $restarted restarts"
    last_report=$SECONDS
  fi
  # Kills are paced over the run: kill i waits until i/(kills+1) of the jobs
  # are done, then comes 1-4 s after the previous one.
  if ((killed < kills && SECONDS >= next_kill && ndone * (kills + 1) >= killed * total)); then
    if kill_random_agent; then
      killed=$((killed + 1))
      next_kill=$((SECONDS + 1 + RANDOM % 4))
    fi
  fi
  if ((frozen < freezes && SECONDS >= next_kill && ndone * (freezes + 1) >= frozen * total)); then
    if freeze_random_agent; then
      frozen=$((frozen + 1))
      next_kill=$((SECONDS + 1 + RANDOM % 4))
    fi
  fi
  thaw_due
  if ((!restarted && ndone * 100 >= restart_at * total)); then
    restart_redis || {
      failed=1
      break
    }
    restarted=1
  fi
  sleep 0.5
done
((failed == 0)) || exit 1
say "queue drained: $killed kills, $frozen freezes, $restarted Redis restart(s); stopping the agents"

# The agents find nothing more and exit within CI_WAIT; then the loops end.
: >"$tmp/stop"
thaw_due all
for pid in "${loop_pids[@]}"; do
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
done
stop_soak_agents "$tmp"
runtime=$((SECONDS - started))

# --- checks ------------------------------------------------------------------------------

# Stray processes: anything still running whose command line, environment or
# working directory points into the soak's directory, but the services.
strays=()
for proc in /proc/[0-9]*; do
  pid=${proc#/proc/}
  case $pid in "$$" | "$BASHPID" | "$redis_pid" | "$monitor_pid" | "$git_pid") continue ;; esac
  if { tr '\0' '\n' <"$proc/cmdline" | grep -qF "$tmp" ||
    tr '\0' '\n' <"$proc/environ" | grep -qF "$tmp" ||
    [[ $(readlink "$proc/cwd") == "$tmp"* ]]; } 2>/dev/null; then
    strays+=("$pid $({ tr '\0' ' ' <"$proc/cmdline" | cut -c1-120; } 2>/dev/null)")
  fi
done

check_rc=0
python3 "$helper" check --port "$redis_port" --dir "$tmp" --agents "$agents" \
  --kills-requested "$kills" --freezes-requested "$freezes" || check_rc=$?
echo "  stray processes          ${#strays[@]}"
for s in "${strays[@]}"; do echo "    $s"; done
echo "  runtime                  ${runtime} s (jobs $jobs, agents $agents, kills $kills, freezes $freezes, lease ${lease} s, seed $seed)"
if ((check_rc != 0 || ${#strays[@]} != 0)); then
  failed=1
  echo "SOAK FAILED"
  exit 1
fi
echo "SOAK PASSED"
