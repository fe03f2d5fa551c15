#!/usr/bin/env bash
# The agent's share of a cold start: from the moment the container's first
# tool starts to a claimed job with its source on disk, what a new agent pod
# spends before the pipeline can begin. The rest of the budget (KEDA's
# polling, scheduling, the image pull) belongs to the cluster and is
# described in docs/performance.md.
#
#   scripts/bench-coldstart.sh [BUILD_DIR]     (default: build)
#
# Per round: a job for examples/hello-ci is enqueued on a local redis-server
# (free 127.0.0.1 port), then `ci-consume` runs as packaging/entrypoint.sh
# would start it, against a local git server with Basic auth, with
#   cold   an empty cache directory (a pod on a fresh node), and
#   warm   the cache directory of the previous cold run (the git mirror is
#          there: an incremental fetch).
# Each run's JSON log gives the time of "claimed job"; the process's exit
# marks the source fetched and job.json written. Printed: medians over
# CIAGENT_BENCH_ROUNDS rounds (default 5) of start → claimed and start →
# ready.
#
# Exit status: 0 when every run claimed and fetched its job, 1 otherwise,
# 2 when a tool is missing.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
build_dir=${1:-build}
rounds=${CIAGENT_BENCH_ROUNDS:-5}
python=$lib_python  # Debian's: starts fast and has what the server needs

need_tools "" redis-server redis-cli git "$python"
consume=$build_dir/tools/ci-consume/ci-consume
if [[ ! -x $consume ]]; then
  [[ -f $build_dir/build.ninja ]] || meson setup "$build_dir" >/dev/null
  ninja -C "$build_dir" -j2 tools/ci-consume/ci-consume >/dev/null
fi
consume=$(realpath "$consume")

work=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-coldstart.XXXXXX")
cleanup_on_exit "$work"

# Redis on a free port.
start_redis "$work"

# The example crate in a bare repository behind Basic auth.
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
example_repository "$work" bench
token=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
(umask 077 && printf 'bench:%s\n' "$token" >"$work/git-auth")
start_git_server "$work" "$work/git" 0 --auth-file "$work/git-auth" \
  --log "$work/git.log" ||
  { echo "bench-coldstart: git server did not start" >&2; exit 1; }
repo=http://127.0.0.1:$git_port/bench/hello-ci.git
redis-cli -p "$redis_port" XGROUP CREATE ci-jobs ci-workers 0 MKSTREAM >/dev/null

# run MODE ROUND: one ci-consume; appends "mode claimed_s ready_s" to results.
run() {
  local mode=$1 round=$2 cache job start end
  cache=$work/cache-$round
  [[ $mode == cold ]] && rm -rf "$cache"
  mkdir -p "$cache" "$work/job-$mode-$round"
  job=cold-start-$mode-$round
  redis-cli -p "$redis_port" XADD ci-jobs '*' job \
    "{\"job_id\":\"$job\",\"repo\":\"$repo\",\"branch\":\"main\",\"commit\":\"$commit\"}" >/dev/null
  start=$EPOCHREALTIME
  if ! env -i PATH="$PATH" HOME="$HOME" REDIS_URL="redis://127.0.0.1:$redis_port" \
      POD_NAME="bench-$mode-$round" CI_WORKDIR="$work/job-$mode-$round" \
      CI_CACHE_DIR="$cache" GIT_USERNAME=bench GIT_TOKEN="$token" \
      "$consume" --wait 10 >"$work/$job.out" 2>"$work/$job.log"; then
    echo "bench-coldstart: $mode run $round failed:" >&2
    tail -n 3 "$work/$job.log" >&2
    exit 1
  fi
  end=$EPOCHREALTIME
  "$python" - "$work/$job.log" "$start" "$end" "$mode" >>"$work/results" <<'PY'
import datetime, json, sys
log, start, end, mode = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
claimed = None
for line in open(log):
    entry = json.loads(line)
    if entry.get("msg") == "claimed job":
        ts = datetime.datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
        claimed = ts.replace(tzinfo=datetime.timezone.utc).timestamp()
        break
if claimed is None:
    sys.exit("no 'claimed job' line in " + log)
print(mode, f"{claimed - start:.3f}", f"{end - start:.3f}")
PY
}

echo "bench-coldstart: $rounds rounds, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for ((round = 1; round <= rounds; round++)); do
  run cold "$round"
  run warm "$round"
done

"$python" - "$work/results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print("%-6s %22s %22s" % ("cache", "start -> claimed (s)", "start -> ready (s)"))
for mode in ("cold", "warm"):
    claimed = [float(r[1]) for r in rows if r[0] == mode]
    ready = [float(r[2]) for r in rows if r[0] == mode]
    print("%-6s %10.3f (%.3f-%.3f) %10.3f (%.3f-%.3f)" % (
        mode, statistics.median(claimed), min(claimed), max(claimed),
        statistics.median(ready), min(ready), max(ready)))
PY
