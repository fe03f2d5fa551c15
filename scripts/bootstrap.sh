#!/usr/bin/env bash
# Installs every package needed to build and test libciagent on Debian 12.
# Idempotent: packages already present are left alone, and apt is not even
# consulted when nothing is missing. Needs root (or sudo).
#
#   scripts/bootstrap.sh [PACKAGE...]  build and test dependencies, Node.js
#                                      and npm included (--with-node, once
#                                      needed for them, is still accepted),
#                                      and the PACKAGEs a caller needs on
#                                      top (scripts/test-arm64.sh: the cross
#                                      compiler and qemu)
set -euo pipefail

packages=(
  # build
  meson ninja-build pkg-config g++
  libabsl-dev libhiredis-dev libsimdjson-dev libssl-dev
  libcurl4-openssl-dev libgit2-dev zlib1g-dev
  libtomlplusplus-dev  # Cargo.toml: pipeline configuration and cache key
  libmicrohttpd-dev  # ci-queue webhook's HTTP server
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  redis-server redis-tools
  time  # /usr/bin/time -v: peak RSS in scripts/bench-prune.sh
  sccache  # the build cache's optional compiler cache
  git openssl python3
  # registry client tests: a real registry, a JWT token server, image tools;
  # the metrics push test: a real Pushgateway
  prometheus-pushgateway
  docker-registry python3-jwt python3-cryptography skopeo buildah umoci
  # crates the Rust fixture tests/fixtures/with_deps builds offline
  # (vendored under /usr/share/cargo/registry)
  librust-itoa-dev librust-csv-core-dev librust-memchr-dev
  # and those of tests/fixtures/many_deps (the build cache benchmark)
  librust-clap-dev librust-serde-derive-dev librust-serde-json-dev
  librust-regex-dev librust-aho-corasick-dev librust-rand-dev librust-rayon-dev
  # fuzzing and sanitizers (clang builds)
  clang libclang-rt-14-dev
)
# Node.js and npm: the Kubernetes manifest validation (tests/packaging) and
# the BullMQ comparison (scripts/bench-queue.sh). npm may come bundled with a
# nodejs from elsewhere; Debian is only asked for a command that is missing.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)

for arg in "$@"; do
  case $arg in
    --with-node) ;;
    -*)
      echo "bootstrap: unknown option $arg" >&2
      exit 2
      ;;
    *) packages+=("$arg") ;;
  esac
done

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "bootstrap: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "bootstrap: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
