#!/usr/bin/env bash
# Image production: libciagent's image assembly against `buildah bud`
# (FROM base + COPY the binary) and `buildah push`, the same image each way,
# push included, side by side in one run, rounds in alternation.
#
#   scripts/bench-image.sh [--rounds N] [--base-size BYTES] [BUILD_DIR]
#
#   BUILD_DIR          the meson build directory (default: build), configured
#                      with the benchmarks and bench/image_assembly built when
#                      needed
#   --rounds N         rounds (default 3, or CIAGENT_BENCH_ROUNDS); medians
#                      are compared
#   --base-size BYTES  pseudo-random bytes in the base's root filesystem
#                      (default 4194304: a base of a few MiB)
#
# The image: a base made once (a small root filesystem with /etc/passwd and
# the filler, `umoci insert` into an OCI layout) plus one release binary (a
# static Rust program built with rustc -C opt-level=3), at
# /usr/local/bin/hello, entrypoint, user 65532. Each round, in an order that
# rotates from round to round, every side gets a registry of its own on an
# empty storage directory, into which the base is pushed with skopeo
# (untimed); then, timed:
#   assembly      bench/image_assembly: AssembleImage, what the image step
#                 does for `image.base` (base manifest and config read, layer
#                 and config written, base layer mounted, layer, config and
#                 manifest pushed), process start included
#   buildah-warm  buildah bud (vfs storage, chroot isolation, as the image
#                 step runs it) + buildah push, with the base already pulled
#                 into the storage (untimed), as on an agent whose buildah
#                 storage is kept between jobs
#   buildah-cold  the same on an empty storage: the base's pull is timed too
# Every result is read back with `skopeo inspect`; assembly's digest must be
# what the tool printed. Times are the shell's clock around the commands,
# after a `sync`.
#
# Prints per side the median, min and max seconds (and for assembly-call the
# AssembleImage call alone, as the image step pays it inside ci-build), and
# the ratios buildah-warm / assembly and buildah-cold / assembly (target
# >= 10), process start included on both sides.
# Exit status: 0 when every side was measured and checked (whether or not
# the target is met), 1 when a command or a check failed, 2 on a usage error,
# a missing tool, or without root (buildah's vfs storage and chroot
# isolation need it here).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
rounds=${CIAGENT_BENCH_ROUNDS:-3}
build_dir=build
base_size=4194304
target=10

usage() { usage_from_header 6 15; }
while (($#)); do
  case $1 in
    --rounds) rounds=${2:-}; shift 2 || usage ;;
    --base-size) base_size=${2:-}; shift 2 || usage ;;
    -h | --help) print_help ;;
    -*) unknown_option "$1" ;;
    *) build_dir=$1; shift ;;
  esac
done
need_positive --rounds "$rounds"
need_positive --base-size "$base_size"
if [[ -d ${HOME:-/nonexistent}/.cargo/bin ]]; then PATH=$HOME/.cargo/bin:$PATH; fi
need_tools " (scripts/bootstrap.sh installs everything)" \
  docker-registry skopeo umoci buildah curl rustc meson ninja
if ((EUID != 0)); then
  echo "$prog: buildah's vfs storage and chroot isolation need root here" >&2
  exit 2
fi
warn_if_loaded
ensure_bench_target "$build_dir" bench/image_assembly
assemble=$(absolute_executable "$build_dir/bench/image_assembly")
unset REGISTRY_URL GITEA_URL REGISTRY_USERNAME REGISTRY_TOKEN REGISTRY_TOKEN_FILE \
  REGISTRY_AUTH_FILE CI_CA_FILE

work=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-bench-image.XXXXXX")
cleanup_on_exit "$work"

# --- the binary and the base ------------------------------------------------------
mkdir -p "$work/context"
cat >"$work/hello.rs" <<'RS'
fn main() {
    let who = std::env::args().nth(1).unwrap_or_default();
    println!("hello from {}", who);
}
RS
rustc -C opt-level=3 -C target-feature=+crt-static -o "$work/context/hello" "$work/hello.rs"
binary_bytes=$(stat -c %s "$work/context/hello")

rootfs=$work/rootfs
mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/data"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
head -c "$base_size" /dev/urandom >"$rootfs/data/filler"
layout=$work/base-layout
umoci init --layout "$layout"
umoci new --image "$layout:base"
umoci config --image "$layout:base" --os linux --architecture "$(uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/')" \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin
umoci insert --image "$layout:base" "$rootfs" / >/dev/null
base_bytes=$(du -sb "$layout/blobs" | cut -f1)
cat >"$work/context/Dockerfile" <<'EOF'
ARG BASE
FROM $BASE
COPY hello /usr/local/bin/hello
USER 65532
ENTRYPOINT ["/usr/local/bin/hello"]
EOF
echo "$prog: base of $((base_bytes / 1024)) KiB (compressed), binary of" \
  "$((binary_bytes / 1024)) KiB; $rounds rounds"

# --- one side ---------------------------------------------------------------------
results=$work/results.tsv # side, round, seconds
: >"$results"
warm_storage=$work/buildah-warm

# side_SIDE ROUND BASE IMAGE: produces IMAGE (127.0.0.1:PORT/acme/app:rN)
# on BASE; timed by `timed`. `prepare_SIDE BASE` runs first, untimed.
prepare_assembly() { :; }
side_assembly() {
  "$assemble" "$2" "http://127.0.0.1:$registry_port" acme/app "r$1" \
    "$work/context/hello" "$work/assembly-work" >"$work/assembly.json"
}
buildah_in() {
  buildah --root "$1/root" --runroot "$1/run" --storage-driver vfs "${@:2}"
}
prepare_buildah_warm() {
  buildah_in "$warm_storage" pull --quiet --tls-verify=false "$1" >/dev/null
}
side_buildah_warm() { bud_and_push "$warm_storage" "$@"; }
prepare_buildah_cold() { rm -rf "$work/buildah-cold"; }
side_buildah_cold() { bud_and_push "$work/buildah-cold" "$@"; }
bud_and_push() {
  local storage=$1 round=$2 base=$3 image=$4
  buildah_in "$storage" bud --quiet --isolation chroot --tls-verify=false \
    --build-arg "BASE=$base" -t "localhost/bench-app:r$round" \
    -f "$work/context/Dockerfile" "$work/context" >/dev/null
  buildah_in "$storage" push --quiet --tls-verify=false \
    "localhost/bench-app:r$round" "docker://$image"
  # Untimed would be fairer still, but rmi is part of the image step's
  # buildah run (image_builder.h) and takes milliseconds.
  buildah_in "$storage" rmi "localhost/bench-app:r$round" >/dev/null
}

timed() {
  local side=$1 round=$2 dir=$work/registry-$1-$2
  start_distribution "$dir"
  local base=127.0.0.1:$registry_port/base/tiny:1
  local image=127.0.0.1:$registry_port/acme/app:r$round
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
    "oci:$layout:base" "docker://$base"
  "prepare_${side//-/_}" "$base"
  sync
  local t0 t1
  t0=$(date +%s%N)
  if ! "side_${side//-/_}" "$round" "$base" "$image" 2>"$work/err"; then
    echo "$prog: $side (round $round) failed:" >&2
    tail -n 20 "$work/err" >&2
    exit 1
  fi
  t1=$(date +%s%N)
  local got
  if ! got=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$image" 2>&1); then
    echo "$prog: $side (round $round): skopeo inspect of $image failed: $got" >&2
    exit 1
  fi
  if [[ $side == assembly ]] && ! grep -q "\"digest\":\"$got\"" "$work/assembly.json"; then
    echo "$prog: assembly pushed $got, the tool said $(cat "$work/assembly.json")" >&2
    exit 1
  fi
  local seconds
  seconds=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f", ns / 1e9 }')
  printf '%s\t%s\t%s\n' "$side" "$round" "$seconds" >>"$results"
  printf '  %-13s %7s s  %s' "$side" "$seconds" "$got"
  if [[ $side == assembly ]]; then
    # The AssembleImage call alone, as the image step makes it inside
    # ci-build (no process start).
    local inside
    inside=$(sed -n 's/^{"seconds":\([0-9.]*\).*/\1/p' "$work/assembly.json")
    printf '%s\t%s\t%.3f\n' assembly-call "$round" "$inside" >>"$results"
    printf '  (the call: %.3f s)' "$inside"
  fi
  printf '\n'
  stop_service "$registry_pid"
  rm -rf "$dir"
}

sides=(assembly buildah-warm buildah-cold)
for ((round = 1; round <= rounds; round++)); do
  echo "round $round"
  for ((i = 0; i < ${#sides[@]}; i++)); do
    timed "${sides[(i + round - 1) % ${#sides[@]}]}" "$round"
  done
done

# --- summary ----------------------------------------------------------------------
median() {
  awk -F'\t' -v side="$1" '$1 == side { print $3 }' "$results" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
range() {
  awk -F'\t' -v side="$1" '$1 == side { print $3 }' "$results" | sort -n |
    awk 'NR == 1 { min = $1 } { max = $1 } END { printf "min %s, max %s", min, max }'
}
echo
printf '%-13s %9s\n' side "median s"
for side in "${sides[@]}" assembly-call; do
  printf '%-13s %9s  (%s)\n' "$side" "$(median "$side")" "$(range "$side")"
done
a=$(median assembly)
for side in buildah-warm buildah-cold; do
  awk -v b="$(median "$side")" -v a="$a" -v s="$side" -v t="$target" \
    'BEGIN { printf "%s / assembly: %.1fx (target >= %dx)\n", s, b / a, t }'
done
