#!/usr/bin/env bash
# Image push: `ci-build --push-layout` against `skopeo copy` and against the
# practical limit of the machine (raw curl uploads), to a local CNCF
# distribution registry, in one run, rounds in alternation.
#
#   scripts/bench-push.sh [--rounds N] [--ci-build PATH] [--layers N]
#                         [--layer-size BYTES] [BUILD_DIR]
#
#   BUILD_DIR        the meson build directory (default: build); set up and
#                    tools/ci-build/ci-build built (-j2) when needed
#   --rounds N       rounds (default 3, or CIAGENT_BENCH_ROUNDS); medians are
#                    compared
#   --ci-build PATH  the binary to measure (no build)
#   --layers N, --layer-size BYTES
#                    the image (default 4 layers of 64M)
#
# The image: one OCI layout made once by tests/testing/make_oci_layout.py
# (gzip tar layers of pseudo-random bytes, which do not compress). Each
# round, in an order that rotates from round to round:
#   ci-build   ci-build --push-layout LAYOUT --image 127.0.0.1:PORT/bench/app:rN
#   skopeo     skopeo copy oci:LAYOUT:TAG docker://127.0.0.1:PORT/bench/app:rN
#   curl       the limit: monolithic uploads of the layers and the config,
#              all in parallel (one curl process POSTs for the upload
#              sessions, one PUTs the files with `-T`), then the manifest
# each into a registry of its own, started for that push on an empty storage
# directory, so that no side finds a blob already there. skopeo keeps a
# blob-info cache across runs (as root
# /var/lib/containers/cache/blob-info-cache-v1.boltdb, otherwise under
# ${XDG_DATA_HOME:-~/.local/share}/containers/cache) and mounts blobs it
# pushed before instead of uploading them: it is removed before every skopeo
# run. Then the re-push: one registry that already holds every blob (pushed
# with curl, untimed), and ci-build and skopeo push the same layout to new
# tags of the same repository; nothing but HEAD requests and the manifest
# should be sent.
#
# Every push is checked: `skopeo inspect` of the pushed tag must give the
# layout's manifest digest; the registry's access log must show one finished
# upload per blob for a push into an empty registry (so nobody skipped or
# mounted one), and no upload request at all for ci-build's re-push.
# Times are the shell's clock around the whole process (for curl, its three
# processes) after a `sync`, process start included: on some virtual
# machines that alone is 0.05-0.2 s per process. skopeo 1.9.3 uploads the
# blobs of an oci: source one after the other (its access log shows it).
#
# Prints per side the median, min and max seconds and MiB/s, and the ratios
# skopeo / ci-build (target >= 1.5), ci-build / curl and, for the re-push,
# skopeo / ci-build.
# Exit status: 0 when every push was measured and checked (whether or not the
# target is met; a missing `ci-build --push-layout` is reported and skipped),
# 1 when a push or a check failed, 2 on a usage error or a missing tool.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
repo_root=$PWD
rounds=${CIAGENT_BENCH_ROUNDS:-3}
build_dir=build
ci_build=""
layers=4
layer_size=64M
target_skopeo_vs_ci=1.5
repo=bench/app
tag=bench

usage() { usage_from_header 6 15; }
while (($#)); do
  case $1 in
    --rounds) rounds=${2:-}; shift 2 || usage ;;
    --ci-build) ci_build=${2:-}; shift 2 || usage ;;
    --layers) layers=${2:-}; shift 2 || usage ;;
    --layer-size) layer_size=${2:-}; shift 2 || usage ;;
    -h | --help) usage ;;
    -*) echo "bench-push: unknown option: $1" >&2; usage ;;
    *) build_dir=$1; shift ;;
  esac
done
need_positive --rounds "$rounds"
need_positive --layers "$layers"
python=$lib_python
need_tools " (scripts/bootstrap.sh installs everything)" \
  docker-registry skopeo curl "$python"

# --- build ---------------------------------------------------------------------
if [[ -z $ci_build ]]; then
  need_tools " (or pass --ci-build)" meson ninja
  if [[ ! -f $build_dir/build.ninja ]]; then
    meson setup "$build_dir" >/dev/null
  fi
  if ! ninja -C "$build_dir" -j2 tools/ci-build/ci-build >"${TMPDIR:-/tmp}/bench-push-build.$$.log" 2>&1; then
    tail -n 30 "${TMPDIR:-/tmp}/bench-push-build.$$.log" >&2
    rm -f "${TMPDIR:-/tmp}/bench-push-build.$$.log"
    echo "bench-push: building tools/ci-build/ci-build in $build_dir failed" >&2
    exit 2
  fi
  rm -f "${TMPDIR:-/tmp}/bench-push-build.$$.log"
  ci_build=$build_dir/tools/ci-build/ci-build
fi
ci_build=$(absolute_executable "$ci_build")
contenders=(ci-build skopeo curl)
if ! "$ci_build" --help 2>&1 | grep -q -- --push-layout; then
  echo "bench-push: ci-build --push-layout not available ($ci_build); measuring skopeo and curl only"
  contenders=(skopeo curl)
fi

# Nothing of the caller's environment may steer ci-build to other registries
# or credentials.
unset REGISTRY_URL GITEA_URL REGISTRY_USERNAME REGISTRY_TOKEN REGISTRY_TOKEN_FILE \
  CI_CA_FILE

work=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-bench-push.XXXXXX")
reg_pid=""
stop_registry() {
  stop_pid "$reg_pid"
  reg_pid=""
}
cleanup_on_exit "$work"
trap 'stop_registry; lib_cleanup' EXIT

# --- the image --------------------------------------------------------------------
layout=$work/layout
start=$(date +%s%N)
"$python" "$repo_root/tests/testing/make_oci_layout.py" "$layout" --layers "$layers" \
  --layer-size "$layer_size" --seed bench-push --tag "$tag" >"$work/layout.json"
gen_ms=$((($(date +%s%N) - start) / 1000000))
# manifest digest, media type, total bytes, blob count (layers and config),
# then the layer digests, one a line.
"$python" - "$work/layout.json" >"$work/layout.txt" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
m = s["manifests"][0]
print(s["manifest_digest"], s["manifest_media_type"], s["total_bytes"],
      len(m["layers"]) + 1, m["config_digest"])
for d in m["layers"]:
    print(d)
PY
read -r manifest_digest manifest_type total_bytes blob_count config_digest <"$work/layout.txt"
mapfile -t layer_digests < <(tail -n +2 "$work/layout.txt")
echo "bench-push: image of $layers layers of $layer_size: $((total_bytes / 1048576)) MiB" \
  "in $((blob_count + 1)) blobs, made in $((gen_ms / 1000)).$(printf '%03d' $((gen_ms % 1000))) s;" \
  "manifest $manifest_digest"

# --- registries -------------------------------------------------------------------
# start_registry NAME: a new registry on an empty storage directory
# $work/NAME/storage, on a free port; sets reg_pid, port, reg_dir. Its access
# log (combined log format, one line per request) goes to $reg_dir/access.log.
start_registry() {
  reg_dir=$work/$1
  local attempt
  for attempt in 1 2 3; do
    rm -rf "$reg_dir"
    mkdir -p "$reg_dir/storage"
    port=$(free_port)
    cat >"$reg_dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $reg_dir/storage
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: bench-push-$port
EOF
    docker-registry serve "$reg_dir/config.yml" >"$reg_dir/access.log" 2>"$reg_dir/registry.log" &
    reg_pid=$!
    local _
    for _ in $(seq 200); do
      if curl -sf -o /dev/null "http://127.0.0.1:$port/v2/"; then return 0; fi
      if ! kill -0 "$reg_pid" 2>/dev/null; then break; fi
      sleep 0.05
    done
    stop_registry
  done
  echo "bench-push: docker-registry did not start (attempt $attempt):" >&2
  tail -n 20 "$reg_dir/registry.log" >&2
  exit 1
}

# Stops the registry and removes its storage (the next push writes into a
# new one; the page cache keeps nothing dirty of this one after the sync).
drop_registry() {
  stop_registry
  rm -rf "$reg_dir"
}

# --- the pushes -------------------------------------------------------------------
# skopeo's blob-info cache: containers/image keeps it here for root, under
# the user's data directory otherwise.
if ((EUID == 0)); then
  skopeo_cache=/var/lib/containers/cache/blob-info-cache-v1.boltdb
else
  skopeo_cache=${XDG_DATA_HOME:-${HOME:-/nonexistent}/.local/share}/containers/cache/blob-info-cache-v1.boltdb
fi
clear_skopeo_cache() {
  if [[ -e $skopeo_cache ]] && ! rm -f "$skopeo_cache"; then
    echo "bench-push: cannot remove skopeo's blob-info cache $skopeo_cache" >&2
    exit 1
  fi
}

push_ci_build() {
  "$ci_build" --push-layout "$layout" --image "127.0.0.1:$port/$repo:$1" </dev/null
}

push_skopeo() {
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
    "oci:$layout:$tag" "docker://127.0.0.1:$port/$repo:$1"
}

# The limit: three curl processes (starting a process is not free on every
# machine): one opens an upload session per blob (layers and config), all at
# once; one sends the blobs, all at once, each a monolithic PUT that streams
# the file (-T; no Expect: 100-continue round trip); one puts the manifest.
push_curl() {
  local base=http://127.0.0.1:$port/v2/$repo blobs=("${layer_digests[@]}" "$config_digest")
  local args=() digest location i=0
  for digest in "${blobs[@]}"; do args+=(-o /dev/null "$base/blobs/uploads/"); done
  curl -sS --no-progress-meter -f -Z --parallel-immediate -X POST -w '%{http_code} %header{location}\n' \
    "${args[@]}" >"$work/curl-post" || return 1
  local locations
  mapfile -t locations < <(tr -d '\r' <"$work/curl-post" | awk '$1 == 202 { print $2 }')
  if ((${#locations[@]} != ${#blobs[@]})); then
    echo "curl: ${#locations[@]} upload sessions for ${#blobs[@]} blobs:" >&2
    cat "$work/curl-post" >&2
    return 1
  fi
  args=()
  for digest in "${blobs[@]}"; do
    location=${locations[i++]}
    if [[ $location == /* ]]; then location=http://127.0.0.1:$port$location; fi
    if [[ $location == *\?* ]]; then location+="&"; else location+="?"; fi
    args+=(-o /dev/null -T "$layout/blobs/sha256/${digest#sha256:}" "${location}digest=$digest")
  done
  curl -sS --no-progress-meter -f -Z --parallel-immediate -H 'Content-Type: application/octet-stream' \
    -H 'Expect:' -w '%{http_code}\n' "${args[@]}" >"$work/curl-put" || return 1
  if [[ $(grep -c '^201$' "$work/curl-put") != "${#blobs[@]}" ]]; then
    echo "curl: not every blob upload answered 201:" >&2
    cat "$work/curl-put" >&2
    return 1
  fi
  curl -sS -f -o /dev/null -X PUT -H "Content-Type: $manifest_type" \
    --data-binary "@$layout/blobs/sha256/${manifest_digest#sha256:}" "$base/manifests/$1"
}

# Counts requests in the access log from line FROM on: finished uploads
# (PUT with the digest, 201), mounts (POST with mount=, 201) and all upload
# requests (POST, PATCH, PUT under /blobs/uploads/).
count_uploads() {
  tail -n +"$1" "$reg_dir/access.log" | awk -v repo="$repo" '
    BEGIN { up = "/v2/" repo "/blobs/uploads/" }
    {
      method = substr($6, 2); path = $7; status = $9
      if (index(path, up) != 1) next
      all++
      if (method == "PUT" && path ~ /digest=/ && status == 201) done++
      if (method == "POST" && path ~ /mount=/ && status == 201) mounted++
    }
    END { printf "%d %d %d\n", done, mounted, all }'
}

results=$work/results.tsv   # side, round, seconds, finished uploads, mounts, upload requests
: >"$results"

# timed SIDE ROUND TAG: one push with push_SIDE to $repo:TAG of the running
# registry, timed and checked; appends a line to the results.
timed() {
  local side=$1 round=$2 ref=$3 fn
  case $side in
    repush-*) fn=push_${side#repush-} ;;
    *) fn=push_$side ;;
  esac
  fn=${fn//-/_}
  if [[ $fn == push_skopeo ]]; then clear_skopeo_cache; fi
  local from
  from=$(($(wc -l <"$reg_dir/access.log") + 1))
  sync
  local t0 t1 rc=0
  t0=$(date +%s%N)
  "$fn" "$ref" >"$work/out" 2>"$work/err" || rc=$?
  t1=$(date +%s%N)
  if ((rc != 0)); then
    echo "bench-push: $side (round $round) exited $rc" >&2
    tail -n 30 "$work/out" "$work/err" >&2
    exit 1
  fi
  local got
  if ! got=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' \
      "docker://127.0.0.1:$port/$repo:$ref" 2>&1); then
    echo "bench-push: $side (round $round): skopeo inspect of $repo:$ref failed: $got" >&2
    exit 1
  fi
  if [[ $got != "$manifest_digest" ]]; then
    echo "bench-push: $side (round $round): $repo:$ref is $got, expected $manifest_digest" >&2
    exit 1
  fi
  local finished mounted requests
  read -r finished mounted requests < <(count_uploads "$from")
  case $side in
    repush-ci-build)
      if ((requests != 0)); then
        echo "bench-push: ci-build's re-push (round $round) sent $requests upload" \
          "requests; every blob was in the registry already" >&2
        exit 1
      fi ;;
    repush-*) ;;
    *)
      if ((finished != blob_count || mounted != 0)); then
        echo "bench-push: $side (round $round) finished $finished uploads and" \
          "$mounted mounts into an empty registry; expected $blob_count uploads" >&2
        exit 1
      fi ;;
  esac
  local seconds
  seconds=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f", ns / 1e9 }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$side" "$round" "$seconds" "$finished" \
    "$mounted" "$requests" >>"$results"
  printf '  %-16s %7s s  registry: %d uploads, %d mounts, %d upload requests' "$side" \
    "$seconds" "$finished" "$mounted" "$requests"
  # ci-build's own summary line.
  if grep -q '"bytes_uploaded"' "$work/out"; then
    sed -n 's/.*"blobs_uploaded":\([0-9]*\).*"blobs_existing":\([0-9]*\).*"bytes_uploaded":\([0-9]*\).*/; ci-build: \1 uploaded, \2 existing, \3 bytes/p' \
      "$work/out" | head -n 1 | tr -d '\n'
  fi
  printf '\n'
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
read -r load1 _ </proc/loadavg
if awk -v l="$load1" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
  echo "bench-push: warning: load average $load1 on $(nproc) CPUs before the start;" \
    "the registry, the clients and the other work share the CPUs"
fi
echo "bench-push: $rounds rounds; $(skopeo --version); $(curl --version | head -n 1 | cut -d' ' -f1-2);" \
  "$(nproc) CPUs, load average $load_start"
echo "bench-push: skopeo's blob-info cache $skopeo_cache is removed before every skopeo run"
n=${#contenders[@]}
for round in $(seq "$rounds"); do
  echo " round $round"
  # Each side first, second and last in turn.
  for i in $(seq 0 $((n - 1))); do
    side=${contenders[$(((i + round - 1) % n))]}
    start_registry "$side-$round"
    timed "$side" "$round" "r$round"
    drop_registry
  done
  # The re-push: every blob is in the registry (and the repository) already.
  start_registry "repush-$round"
  if ! push_curl seed >"$work/out" 2>"$work/err"; then
    echo "bench-push: seeding the re-push registry failed:" >&2
    cat "$work/err" >&2
    exit 1
  fi
  repush=(skopeo)
  if [[ ${contenders[0]} == ci-build ]]; then
    if ((round % 2)); then repush=(ci-build skopeo); else repush=(skopeo ci-build); fi
  fi
  for side in "${repush[@]}"; do
    timed "repush-$side" "$round" "again-$side-r$round"
  done
  drop_registry
done

# --- the table ------------------------------------------------------------------------
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
"$python" - "$results" "$total_bytes" "$rounds" "$target_skopeo_vs_ci" \
  "$load_start" "$load_end" "$layers" "$layer_size" <<'PY'
import statistics, sys
path, total, rounds, target, load0, load1, layers, size = sys.argv[1:]
total, target = int(total), float(target)
times = {}
for line in open(path):
    side, _, seconds, *_ = line.rstrip("\n").split("\t")
    times.setdefault(side, []).append(float(seconds))
med = {side: statistics.median(v) for side, v in times.items()}
names = {
    "ci-build": "ci-build --push-layout",
    "skopeo": "skopeo copy",
    "curl": "curl, parallel uploads (limit)",
    "repush-ci-build": "re-push: ci-build --push-layout",
    "repush-skopeo": "re-push: skopeo copy",
}
mib = total / (1 << 20)
print()
print("push of %s x %s (%.1f MiB), median of %s rounds; load average %s at "
      "start, %s at end" % (layers, size, mib, rounds, load0, load1))
print("%-36s%9s%9s%9s%10s" % ("", "median s", "min s", "max s", "MiB/s"))
for side in names:
    if side not in times:
        print("%-36s%9s" % (names[side], "n/a"))
        continue
    v = times[side]
    rate = "%10.0f" % (mib / med[side]) if not side.startswith("repush") else ""
    print("%-36s%9.3f%9.3f%9.3f%s" % (names[side], med[side], min(v), max(v),
                                       rate))
def ratio(a, b):
    return med[a] / med[b] if a in med and b in med and med[b] > 0 else None
r = ratio("skopeo", "ci-build")
if r is None:
    print("%-36s%9s   target >= %.1f: not measured (ci-build --push-layout "
          "not available)" % ("skopeo / ci-build", "n/a", target))
else:
    print("%-36s%9.2f x target >= %.1f: %s" % (
        "skopeo / ci-build", r, target, "met" if r >= target else "not met"))
r = ratio("ci-build", "curl")
print("%-36s%9s" % ("ci-build / curl limit", "n/a") if r is None else
      "%-36s%9.2f x (1.00 = as fast as raw curl)" % ("ci-build / curl limit", r))
r = ratio("skopeo", "curl")
print("%-36s%9.2f x" % ("skopeo / curl limit", r))
r = ratio("repush-skopeo", "repush-ci-build")
print("%-36s%9s" % ("re-push: skopeo / ci-build", "n/a") if r is None else
      "%-36s%9.2f x" % ("re-push: skopeo / ci-build", r))
PY
