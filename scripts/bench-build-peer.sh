#!/usr/bin/env bash
# The peer of `ci-build --local` in scripts/bench-build.sh: a plain shell
# script running the same cargo commands on the same crate, and nothing else.
# It takes ci-build's local-mode flags, so either can stand in for the other
# (`scripts/bench-build.sh --ci-build scripts/bench-build-peer.sh` compares
# the peer with itself, which shows the noise floor of the benchmark).
#
#   scripts/bench-build-peer.sh --local CRATE [--steps check,build,test,clippy]
#       [--cargo-home DIR] [--target-dir DIR] [--result FILE]
#
# --result is accepted and ignored. CARGO_HOME comes from the environment when
# --cargo-home is not given. The steps run in the order given and the first
# failure ends the run with cargo's exit status.
set -euo pipefail

crate="" steps="check,build,test,clippy" target_dir=""
while (($#)); do
  case $1 in
    --local) crate=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --cargo-home) export CARGO_HOME=$2; shift 2 ;;
    --target-dir) target_dir=$2; shift 2 ;;
    --result) shift 2 ;;
    *) echo "bench-build-peer: unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [[ -z $crate ]]; then
  echo "usage: bench-build-peer.sh --local CRATE [--steps LIST] [--cargo-home DIR] [--target-dir DIR]" >&2
  exit 2
fi
if [[ -d ${HOME:-/nonexistent}/.cargo/bin ]]; then PATH=$HOME/.cargo/bin:$PATH; fi
export CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never

cd "$crate"
common=()
if [[ -f Cargo.lock ]]; then common+=(--locked); fi
if [[ -n $target_dir ]]; then common+=(--target-dir "$target_dir"); fi

IFS=, read -ra wanted <<<"$steps"
for step in "${wanted[@]}"; do
  case $step in
    check) cargo check --workspace --all-targets "${common[@]}" ;;
    build) cargo build --workspace --release "${common[@]}" --message-format=json-render-diagnostics ;;
    test) cargo test --workspace --no-fail-fast "${common[@]}" ;;
    clippy) cargo clippy --workspace --all-targets "${common[@]}" --message-format=json ;;
    *) echo "bench-build-peer: unknown step: $step" >&2; exit 2 ;;
  esac
done
