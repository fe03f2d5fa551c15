#!/usr/bin/env bash
# ci-cache-prune over a synthetic cache of about 1M files, against the
# equivalent `find` pass. In one run, rounds in alternation of
#   find    find <root> -printf '%s\n' | awk '{s += $1} END {print s}'
#           (every file visited and lstat'ed, sizes summed);
#   prune   ci-cache-prune --dry-run --json on the same root (every entry
#           walked and measured, stamps read, locks probed, plan made;
#           nothing removed, so the tree survives for the next round), with
#           its default --walk-threads (one per CPU, at most 4);
#   prune1  the same with --walk-threads 1, a single walk as find's;
# each timed with /usr/bin/time -v for its wall time and peak RSS. It prints
# the medians, prune / find and prune1 / find (target <= 1.0) with PASS/FAIL,
# and the peak RSS of all, next to the pruner's peak RSS on an empty root
# (what the walk itself adds); then, unless CIAGENT_BENCH_REAL_PRUNE=0, one
# real prune (--max-age 7d) of the same tree, which removes 9 of the 16
# target dirs and one mirror, with its time, RSS and bytes freed.
#
#   scripts/bench-prune.sh [BUILD_DIR]      (default: build)
#
# The tree is generated once per run under TMPDIR (about 4.2 GB on a
# filesystem with 4 KiB blocks, and 1.05M inodes; the script checks both
# first) and removed at the end. Layout, as docs/caching.md describes it:
#   target/k00..k15   16 target dirs of 50,000 files (deps, build script
#                     outputs, fingerprints, incremental sessions), last used
#                     0..15 days ago
#   git/<key>.git     4 mirrors of 40,000 loose objects in 256 fan-out dirs
#   sccache/          20,000 files in 256 dirs
#   cargo-home/       20,000 registry sources (measured, never an entry)
# File sizes are fixed pseudo-random values of 0-2000 bytes.
#
# Page caches are not dropped (that needs root and would measure the disk):
# one untimed pass of each side runs first, so both read cached metadata.
#
# Environment: CIAGENT_BENCH_ROUNDS (rounds per side, default 5),
# CIAGENT_BENCH_REAL_PRUNE (default 1).
# Exit status: 0 when both sides were measured (whether or not the target is
# met), 1 when a step failed, 2 when a tool or the disk space is missing.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
build_dir=${1:-build}
rounds=${CIAGENT_BENCH_ROUNDS:-5}
real_prune=${CIAGENT_BENCH_REAL_PRUNE:-1}
target_ratio=1.0
prune_bin=$PWD/$build_dir/tools/ci-cache-prune/ci-cache-prune

need_tools "" python3 find awk
[[ -x /usr/bin/time ]] || {
  echo "missing: /usr/bin/time (package time; scripts/bootstrap.sh)" >&2
  exit 2
}
[[ -x $prune_bin ]] || {
  echo "missing: $prune_bin (ninja -C $build_dir)" >&2
  exit 2
}

tmp=${TMPDIR:-/tmp}
avail_kb=$(df -Pk "$tmp" | awk 'NR == 2 {print $4}')
avail_inodes=$(df -Pi "$tmp" | awk 'NR == 2 {print $4}')
if ((avail_kb < 6 * 1024 * 1024)) ||
   { [[ $avail_inodes =~ ^[0-9]+$ ]] && ((avail_inodes < 1200000)); }; then
  echo "not enough room under $tmp: need 6 GB and 1.2M inodes free" \
       "(have ${avail_kb} KB, ${avail_inodes} inodes)" >&2
  exit 2
fi

work=$(mktemp -d "$tmp/bench-prune.XXXXXX")
cleanup_on_exit "$work"
root=$work/cache

echo "generating the tree under $root ..."
gen_start=$(date +%s%N)
python3 - "$root" <<'PY'
import os, sys
from datetime import datetime, timedelta, timezone

root = sys.argv[1]
now = datetime.now(timezone.utc)
state = 12345

def size():
    global state
    state = (state * 1103515245 + 12345) & 0x7FFFFFFF
    return state % 2001

payload = b"x" * 2001

def files(directory, count, prefix="f"):
    os.makedirs(directory, exist_ok=True)
    for i in range(count):
        fd = os.open(f"{directory}/{prefix}{i}", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, payload[:size()])
        os.close(fd)

def stamp(entry, days):
    with open(f"{entry}/ciagent-last-use", "w") as f:
        t = now - timedelta(days=days, hours=1)
        f.write(t.strftime("%Y-%m-%dT%H:%M:%S.000Z") + "\n")

for k in range(16):
    t = f"{root}/target/k{k:02d}/debug"
    files(f"{t}/deps", 2000, "lib")
    for i in range(200):
        files(f"{t}/build/crate{i}-0123456789abcdef/out", 40)
    for i in range(1000):
        files(f"{t}/.fingerprint/crate{i}-0123456789abcdef", 10)
    for i in range(300):
        for j in range(10):
            files(f"{t}/incremental/crate{i}-abc/s-{j}", 10)
    stamp(f"{root}/target/k{k:02d}", k)
    open(f"{root}/target/k{k:02d}.lock", "w").close()
for m in range(4):
    g = f"{root}/git/{m:064x}.git"
    for i in range(256):
        files(f"{g}/objects/{i:02x}", 156)
    files(f"{g}/refs/heads", 64)
    stamp(g, m * 3)
for i in range(256):
    files(f"{root}/sccache/{i >> 4:x}/{i & 15:x}", 78)
files(f"{root}/sccache/meta", 32)
stamp(f"{root}/sccache", 1)
for i in range(100):
    files(f"{root}/cargo-home/registry/src/index/crate{i}-1.0.0/src", 200)
PY
gen_ms=$((($(date +%s%N) - gen_start) / 1000000))
nfiles=$(find "$root" -type f | wc -l)
echo "tree: $nfiles files, $(du -sh "$root" | cut -f1), generated in ${gen_ms} ms"

# Runs "$@" under /usr/bin/time; sets ms and rss_kb.
timed() {
  local out=$work/time.txt start
  sync
  start=$(date +%s%N)
  /usr/bin/time -v -o "$out" "$@" >"$work/stdout" 2>"$work/stderr" || {
    echo "failed: $*" >&2
    cat "$work/stderr" >&2
    exit 1
  }
  ms=$((($(date +%s%N) - start) / 1000000))
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out")
}

# $1 and \$1 are for the inner shell and awk, hence the single quotes.
# shellcheck disable=SC2016
find_pass=(bash -c 'find "$1" -printf "%s\n" | awk "{s += \$1} END {print s}"'
           _ "$root")
prune_pass=("$prune_bin" --cache-dir "$root" --dry-run --json)
prune1_pass=("${prune_pass[@]}" --walk-threads 1)

mkdir "$work/empty"
timed "$prune_bin" --cache-dir "$work/empty" --dry-run --json
empty_rss=$rss_kb

echo "warm-up pass of each side (untimed) ..."
timed "${find_pass[@]}"
timed "${prune_pass[@]}"

declare -A times rss=([find]=0 [prune]=0 [prune1]=0)
sides=(find prune prune1)
for ((r = 1; r <= rounds; r++)); do
  # Rotate the order so no side always runs first.
  for ((i = 0; i < 3; i++)); do
    side=${sides[(i + r) % 3]}
    case $side in
      find) timed "${find_pass[@]}" ;;
      prune) timed "${prune_pass[@]}" ;;
      prune1) timed "${prune1_pass[@]}" ;;
    esac
    times[$side]+=" $ms"
    ((rss_kb > rss[$side])) && rss[$side]=$rss_kb
    printf 'round %d  %-6s %6d ms  peak RSS %6d KB\n' "$r" "$side" "$ms" "$rss_kb"
  done
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
verdict() {
  awk -v p="$1" -v f="$2" -v t="$target_ratio" \
    'BEGIN {r = p / f; printf "%.2fx (target <= %s): %s", r, t, (r <= t) ? "PASS" : "FAIL"}'
}
# The lists are space-separated numbers, split into median's arguments.
# shellcheck disable=SC2086
find_med=$(median ${times[find]})
# shellcheck disable=SC2086
prune_med=$(median ${times[prune]})
# shellcheck disable=SC2086
prune1_med=$(median ${times[prune1]})
echo
echo "files: $nfiles"
printf '%-44s %6d ms   peak RSS %6d KB\n' \
  "find | awk, median:" "$find_med" "${rss[find]}" \
  "ci-cache-prune --dry-run, median:" "$prune_med" "${rss[prune]}" \
  "ci-cache-prune --dry-run --walk-threads 1:" "$prune1_med" "${rss[prune1]}"
echo "ci-cache-prune peak RSS on an empty root: ${empty_rss} KB"
echo "prune / find:  $(verdict "$prune_med" "$find_med")"
echo "prune1 / find: $(verdict "$prune1_med" "$find_med")"
[[ $real_prune == 0 ]] && exit 0

echo
echo "one real prune (--max-age 7d) ..."
# Stamps were written 0..15 days (plus an hour) before: target/k07..k15 and
# one mirror are older than 7 days.
timed "$prune_bin" --cache-dir "$root" --max-age 7d --json
python3 - "$work/stdout" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"removed {len(r['removed'])} entries, {r['bytes_freed'] / 2**30:.2f} GiB "
      f"freed ({r['total_before'] / 2**30:.2f} -> {r['total_after'] / 2**30:.2f} "
      f"GiB), {len(r['failed'])} failed, report duration_ms {r['duration_ms']}")
PY
echo "real prune: ${ms} ms wall, peak RSS ${rss_kb} KB;" \
     "$(find "$root" -type f | wc -l) files left"
