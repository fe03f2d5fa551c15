#!/bin/sh
# Builds packaging/Dockerfile with buildah on a machine that cannot pull from
# Docker Hub, crates.io or static.rust-lang.org, but can reach a Debian
# mirror. Not run by meson: it needs root, buildah, mmdebstrap, a Rust
# toolchain installed with rustup, about 5 GB of disk and 10-20 minutes.
#
#   tests/packaging/build-image.sh [WORK_DIR]
#
# What it proves, and what it cannot:
#   - the base images are stand-ins built here: debian:bookworm is an
#     mmdebstrap minbase of Debian 12; rust:1.82-bookworm is that plus the
#     local rustup's default toolchain (whatever version it is, docs left
#     out) with the official image's RUSTUP_HOME, CARGO_HOME and PATH;
#   - the cargo-tools stage cannot download crates: the Dockerfile is built
#     as a variant whose `cargo install` lines write placeholder commands
#     (`cargo nextest --version` ... then answer); everything else is the
#     real Dockerfile: the builder stage's apt-get and meson build, the
#     runtime packages, clippy, the COPYs, ldconfig, the tools' --help check;
#   - afterwards the image's entrypoint, PATH and user are checked.
#
# The image and its stand-in bases live in WORK_DIR's own vfs storage
# (default: a new directory under /var/tmp), never in the system's.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${1:-$(mktemp -d /var/tmp/ciagent-image.XXXXXX)}
mkdir -p "$work"
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_home=${CARGO_HOME:-$HOME/.cargo}

for tool in buildah mmdebstrap dpkg; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "build-image: $tool not found (apt-get install buildah mmdebstrap)" >&2
    exit 2
  }
done
[ "$(id -u)" = 0 ] || {
  echo "build-image: run as root (rootful buildah, mmdebstrap --mode=root)" >&2
  exit 2
}
toolchain=$(sed -n 's/^default_toolchain = "\(.*\)"$/\1/p' "$rustup_home/settings.toml")
if [ -z "$toolchain" ] || [ ! -d "$rustup_home/toolchains/$toolchain" ]; then
  echo "build-image: no default rustup toolchain under $rustup_home" >&2
  exit 2
fi

bah() {
  buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"
}
say() { printf '\n== %s\n' "$*"; }

arch=$(dpkg --print-architecture)

say "debian:bookworm: mmdebstrap minbase ($arch)"
if ! bah inspect docker.io/library/debian:bookworm >/dev/null 2>&1; then
  mmdebstrap --variant=minbase --mode=root bookworm "$work/bookworm.tar"
  ctr=$(bah from scratch)
  mnt=$(bah mount "$ctr")
  tar -C "$mnt" -xf "$work/bookworm.tar"
  bah umount "$ctr" >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd bash "$ctr"
  bah commit -q "$ctr" docker.io/library/debian:bookworm >/dev/null
  bah rm "$ctr" >/dev/null
  rm -f "$work/bookworm.tar"
fi

say "rust:1.82-bookworm stand-in: debian:bookworm + the local $toolchain toolchain"
if ! bah inspect docker.io/library/rust:1.82-bookworm >/dev/null 2>&1; then
  ctr=$(bah from docker.io/library/debian:bookworm)
  mnt=$(bah mount "$ctr")
  mkdir -p "$mnt/usr/local/rustup/toolchains" "$mnt/usr/local/cargo/bin"
  cp -a "$cargo_home/bin/." "$mnt/usr/local/cargo/bin/"
  cp -a "$rustup_home/settings.toml" "$mnt/usr/local/rustup/"
  tar -C "$rustup_home/toolchains" --exclude='*/share/doc' -cf - "$toolchain" |
    tar -C "$mnt/usr/local/rustup/toolchains" -xf -
  bah umount "$ctr" >/dev/null
  bah config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    "$ctr"
  bah commit -q "$ctr" docker.io/library/rust:1.82-bookworm >/dev/null
  bah rm "$ctr" >/dev/null
fi

say "variant Dockerfile: placeholder cargo tools (no crates.io here)"
# `RUN cargo install --locked --root /opt/cargo-tools NAME --version V`
# becomes a script /opt/cargo-tools/bin/NAME printing "NAME V (placeholder)".
sed 's|^RUN cargo install --locked --root /opt/cargo-tools \([a-z-]*\) --version \(.*\)$|RUN mkdir -p /opt/cargo-tools/bin \&\& printf '"'"'#!/bin/sh\\necho "\1 %s (placeholder)"\\n'"'"' \2 >/opt/cargo-tools/bin/\1 \&\& chmod 755 /opt/cargo-tools/bin/\1|' \
  "$root/packaging/Dockerfile" >"$work/Dockerfile.offline"
if [ "$(grep -c 'placeholder' "$work/Dockerfile.offline")" != 3 ]; then
  echo "build-image: the cargo install lines of packaging/Dockerfile changed; update this script" >&2
  exit 1
fi

say "buildah bud (vfs storage, chroot isolation, docker format keeps HEALTHCHECK)"
start=$(date +%s)
bah bud --pull-never --isolation chroot --format docker \
  --build-arg TARGETARCH="$arch" \
  -f "$work/Dockerfile.offline" -t localhost/libciagent-agent:offline "$root"
echo "built in $(($(date +%s) - start)) s"

say "the image"
bah inspect --format '{{.Docker.Config.Entrypoint}} user={{.Docker.Config.User}} healthcheck={{.Docker.Config.Healthcheck.Test}}' \
  localhost/libciagent-agent:offline
ctr=$(bah from localhost/libciagent-agent:offline)
# shellcheck disable=SC2016  # expanded inside the container
bah run --isolation chroot "$ctr" -- sh -c '
  set -e
  /opt/ciagent/libexec/entrypoint.sh --help | head -n 1
  for tool in ci-consume ci-build ci-cache-prune; do command -v "$tool"; done
  ci-cache-prune --help >/dev/null
  ls -l /bin/sh
  cargo clippy --version
  cargo nextest --version
  buildah --version
  redis-cli --version
  CI_CACHE_DIR=$(mktemp -d) REDIS_URL=redis://127.0.0.1:1 /opt/ciagent/libexec/healthcheck.sh || true
  # No Redis: ci-consume gives up after CI_WAIT, the entrypoint maps it to 1.
  rc=0
  CI_WAIT=1 REDIS_URL=redis://127.0.0.1:1 /opt/ciagent/libexec/entrypoint.sh 2>/dev/null || rc=$?
  echo "entrypoint without Redis: exit $rc"
  [ "$rc" = 1 ]
'
bah rm "$ctr" >/dev/null
echo "ok: localhost/libciagent-agent:offline in $work/storage"
