#!/usr/bin/env bash
# Redis over TLS against plain TCP, side by side on one redis-server that
# serves both (port and tls-port): what rediss:// costs the agent.
#
#   scripts/bench-redis-tls.sh [BUILD_DIR]      (default: build)
#
# Measured, in alternation round by round (median of ROUNDS):
# - the claim -> running -> finalize cycle of a long-running worker
#   (bench/queue_cycle_benchmark BM_ClaimFinalizeCycle, one round trip per
#   job) and of the one-job agent (BM_ClaimThenFinalize, two);
#   goal: TLS >= 0.8x plain;
# - the log shipper (bench/log_stream_benchmark BM_LogShipper);
#   goal: >= 100k lines/s over TLS;
# - one round trip (bench/redis_round_trip_benchmark: PING, GET of 700
#   bytes), next to redis-benchmark -c 1 on the same ports: the floor
#   under all of the above, ours against the peer's.
# The certificates are made by openssl in the temporary directory (EC P-256,
# the server named by IP address); the client verifies the server
# (REDIS_CA_FILE), the server does not ask for a client certificate.
#
# Environment: CIAGENT_BENCH_JOBS (jobs per cycle run, default 10000),
# CIAGENT_BENCH_LINES (lines per shipper run, default 200000),
# CIAGENT_BENCH_ROUNDS (default 5).
# Exit status: 0 when every side was measured (whether or not a goal is
# met), 1 when a benchmark failed, 2 when a tool is missing.
# docs/performance.md keeps the figures.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
build_dir=${1:-build}
rounds=${CIAGENT_BENCH_ROUNDS:-5}
export CIAGENT_BENCH_JOBS=${CIAGENT_BENCH_JOBS:-10000}
export CIAGENT_BENCH_LINES=${CIAGENT_BENCH_LINES:-200000}

need_tools "" redis-server redis-cli openssl python3 meson ninja

work=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-bench-tls.XXXXXX")
cleanup_on_exit "$work"

ensure_bench_target "$build_dir" bench/queue_cycle_benchmark
ensure_bench_target "$build_dir" bench/log_stream_benchmark
ensure_bench_target "$build_dir" bench/redis_round_trip_benchmark

# --- certificates and the server ------------------------------------------------
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
  -keyout "$work/ca.key" -subj "/CN=bench CA" -days 2 \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign" -out "$work/ca.pem" 2>/dev/null
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
  -keyout "$work/server.key" -subj "/CN=127.0.0.1" -days 2 \
  -addext "subjectAltName=IP:127.0.0.1" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -CA "$work/ca.pem" -CAkey "$work/ca.key" -out "$work/server.pem" 2>/dev/null
tls_port=$(free_port)
start_redis "$work" --tls-port "$tls_port" --tls-cert-file "$work/server.pem" \
  --tls-key-file "$work/server.key" --tls-ca-cert-file "$work/ca.pem" \
  --tls-auth-clients no
export REDIS_CA_FILE=$work/ca.pem
declare -A url=([plain]="redis://127.0.0.1:$redis_port"
  [tls]="rediss://127.0.0.1:$tls_port")

# --- the rounds -------------------------------------------------------------------
echo "bench-redis-tls: $rounds rounds; $CIAGENT_BENCH_JOBS jobs, $CIAGENT_BENCH_LINES lines per run"
for round in $(seq "$rounds"); do
  for side in plain tls; do
    CIAGENT_BENCH_REDIS_URL=${url[$side]} "$build_dir/bench/queue_cycle_benchmark" \
      --benchmark_filter='^BM_(ClaimFinalizeCycle|ClaimThenFinalize)' \
      --benchmark_format=json >"$work/queue-$side-$round.json" 2>"$work/queue-$side-$round.log"
    CIAGENT_BENCH_REDIS_URL=${url[$side]} "$build_dir/bench/log_stream_benchmark" \
      --benchmark_filter='^BM_LogShipper/' \
      --benchmark_format=json >"$work/logs-$side-$round.json" 2>"$work/logs-$side-$round.log"
    CIAGENT_BENCH_REDIS_URL=${url[$side]} "$build_dir/bench/redis_round_trip_benchmark" \
      --benchmark_format=json >"$work/trip-$side-$round.json" 2>"$work/trip-$side-$round.log"
  done
  echo "  round $round done"
done

# The peer: redis-benchmark, one connection, GET of the same size.
peer_rate() {
  redis-benchmark "$@" -c 1 -n 20000 -d 700 -t get --csv 2>/dev/null |
    sed -n 's/^"GET","\([0-9.]*\)".*/\1/p'
}
peer_plain=$(peer_rate -p "$redis_port")
peer_tls=$(peer_rate -p "$tls_port" --tls --cacert "$work/ca.pem")

python3 - "$work" "$rounds" "$peer_plain" "$peer_tls" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
peer = {"plain": float(sys.argv[3] or 0), "tls": float(sys.argv[4] or 0)}

def rates(kind, side, name):
    out = []
    for r in range(1, rounds + 1):
        with open(f"{work}/{kind}-{side}-{r}.json") as f:
            for b in json.load(f)["benchmarks"]:
                if b["name"].startswith(name + "/"):
                    if b.get("error_occurred"):
                        sys.exit(f"bench-redis-tls: {name} ({side}) failed: "
                                 f"{b['error_message']}")
                    out.append(b["items_per_second"])
    return statistics.median(out)

print()
print(f"{'median of %d rounds' % rounds:38}{'plain':>12}{'TLS':>12}{'TLS/plain':>11}  goal")
kinds = {"BM_LogShipper": "logs", "BM_Ping": "trip", "BM_Get700Bytes": "trip"}
for name, unit, goal in [("BM_ClaimFinalizeCycle", "jobs/s", "ratio"),
                         ("BM_ClaimThenFinalize", "jobs/s", "ratio"),
                         ("BM_LogShipper", "lines/s", "lines"),
                         ("BM_Ping", "round trips/s", ""),
                         ("BM_Get700Bytes", "round trips/s", "")]:
    kind = kinds.get(name, "queue")
    plain, tls = rates(kind, "plain", name), rates(kind, "tls", name)
    ratio = tls / plain
    if goal == "ratio":
        verdict = ("PASS" if ratio >= 0.8 else "FAIL") + " (>= 0.8x)"
    elif goal == "lines":
        verdict = ("PASS" if tls >= 100000 else "FAIL") + " (>= 100k lines/s)"
    else:
        verdict = ""
    print(f"{name + ' (' + unit + ')':38}{plain:12.0f}{tls:12.0f}{ratio:10.2f}x  {verdict}")
if peer["plain"] and peer["tls"]:
    print(f"{'redis-benchmark GET 700 B, 1 conn':38}{peer['plain']:12.0f}"
          f"{peer['tls']:12.0f}{peer['tls'] / peer['plain']:10.2f}x  (the peer)")
EOF
