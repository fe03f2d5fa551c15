# shellcheck shell=bash
# What the scripts of scripts/ share, sourced before anything else:
#
#   # shellcheck source=lib.sh   (scripts/.shellcheckrc: follow it)
#   source "$(dirname "$0")/lib.sh"
#   prog=bench-logs   # the prefix of its messages
#
# - usage and help from the script's own header comment;
# - option and tool checks that exit 2 (the scripts' usage status);
# - a free port on 127.0.0.1;
# - the bundled example crate as a bare repository for the git test server;
# - services on 127.0.0.1 started in their own session (Ctrl-C reaches the
#   script, which stops them, not the services themselves): redis-server,
#   the distribution registry
#   and the git test server (tests/testing/git_http_server.py);
# - stop_pid, and cleanup_on_exit, which stops the services started here and
#   removes the script's temporary directories on any exit, signals
#   included.
#
# Nothing here changes the working directory or sets shell options.

prog=${prog:-$(basename "$0" .sh)}
lib_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Debian's python3: a version manager's shim on PATH can take a second to
# start, and it has everything the test servers need.
lib_python=/usr/bin/python3
[[ -x $lib_python ]] || lib_python=python3

# --- usage and checks ---------------------------------------------------------

# usage_from_header FIRST LAST: lines FIRST..LAST of the script's header,
# without their '# ', on stderr; exits 2.
usage_from_header() {
  sed -n "$1,$2p" "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# print_help: the script's header comment, up to `set -euo pipefail`, on
# stdout; exits 0.
print_help() {
  sed -n '2,/^set -euo pipefail$/{/^set /d;s/^# \{0,1\}//;p}' "$0"
  exit 0
}

# unknown_option OPTION: says so and points at --help; exits 2.
unknown_option() {
  echo "$prog: unknown option $1 (see --help)" >&2
  exit 2
}

# need_positive OPTION VALUE: exits 2 unless VALUE is a positive integer.
need_positive() {
  if ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
    echo "$prog: $1 wants a positive number, got '$2'" >&2
    exit 2
  fi
}

# need_tools HINT TOOL...: exits 2 when a TOOL is not on PATH, the message
# followed by HINT (e.g. " (scripts/bootstrap.sh installs everything)").
need_tools() {
  local hint=$1 tool
  shift
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null; then
      echo "$prog: $tool not found$hint" >&2
      exit 2
    fi
  done
}

# absolute_executable PATH: PATH made absolute; a bare name is looked up on
# PATH. Exits 2 when it is not an executable.
absolute_executable() {
  local path=$1
  if [[ $path != */* ]]; then path=$(command -v "$path" || echo "$path"); fi
  if [[ ! -x $path ]]; then
    echo "$prog: $path is not an executable (build it, or pass --ci-build)" >&2
    exit 2
  fi
  echo "$(cd "$(dirname "$path")" && pwd)/$(basename "$path")"
}

# parse_cargo_bench_args ARG...: the command line of the benchmarks that run
# ci-build on a crate, [--rounds N] [--ci-build PATH] [--steps LIST]
# [--cargo-config FILE] [CRATE], into rounds, ci_build (made absolute),
# steps, cargo_config and crate, whose defaults the script sets first. Puts
# ~/.cargo/bin on PATH; exits 2 (after the script's usage for --help or a
# bad option) when an option, cargo, python3, the crate, the cargo config or
# ci-build is missing or wrong.
parse_cargo_bench_args() {
  # shellcheck disable=SC2034  # steps: read by the scripts
  while (($#)); do
    case $1 in
      --rounds) rounds=${2:-}; shift 2 || usage ;;
      --ci-build) ci_build=${2:-}; shift 2 || usage ;;
      --steps) steps=${2:-}; shift 2 || usage ;;
      --cargo-config) cargo_config=${2:-}; shift 2 || usage ;;
      -h | --help) usage ;;
      -*) echo "$prog: unknown option: $1" >&2; usage ;;
      *) crate=$1; shift ;;
    esac
  done
  need_positive --rounds "$rounds"
  if [[ -d ${HOME:-/nonexistent}/.cargo/bin ]]; then PATH=$HOME/.cargo/bin:$PATH; fi
  need_tools "" cargo python3
  if [[ ! -f $crate/Cargo.toml ]]; then
    echo "$prog: $crate has no Cargo.toml" >&2
    exit 2
  fi
  if [[ $cargo_config != none && ! -f $cargo_config ]]; then
    echo "$prog: cargo config $cargo_config not found" >&2
    exit 2
  fi
  ci_build=$(absolute_executable "$ci_build")
}

# warn_if_loaded: a warning when the load average is above half the CPUs,
# since other work on the machine shows up in a benchmark's figures.
warn_if_loaded() {
  local load1
  read -r load1 _ </proc/loadavg
  if awk -v l="$load1" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    echo "$prog: warning: load average $load1 on $(nproc) CPUs before the start;" \
      "other work on the machine will show up in the figures"
  fi
}

# ensure_bench_target BUILD_DIR TARGET...: configures BUILD_DIR with the
# benchmarks when needed (a new directory, or one without them) and builds
# the TARGETs quietly.
ensure_bench_target() {
  local build_dir=$1
  shift
  if [[ ! -f $build_dir/build.ninja ]]; then
    meson setup "$build_dir" -Dbenchmarks=enabled
  elif ! grep -q "^$1:" <<<"$(ninja -C "$build_dir" -t targets all)"; then
    meson configure "$build_dir" -Dbenchmarks=enabled
  fi
  ninja -C "$build_dir" "$@" >/dev/null
}

# --- processes ------------------------------------------------------------------

lib_pids=() # services to stop at exit
lib_dirs=() # directories to remove at exit

# stop_pid PID [SIGNAL]: SIGNAL (default TERM), up to 10 s, then SIGKILL.
stop_pid() {
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill "-${2:-TERM}" "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# stop_service PID: stop_pid, and no longer stopped at exit (the number may
# be another process's by then).
stop_service() {
  local pid kept=()
  stop_pid "$1"
  for pid in "${lib_pids[@]}"; do
    [[ $pid == "$1" ]] || kept+=("$pid")
  done
  lib_pids=("${kept[@]}")
}

# shellcheck disable=SC2317  # invoked by trap
lib_cleanup() {
  local pid
  for pid in "${lib_pids[@]}"; do stop_pid "$pid"; done
  if ((${#lib_dirs[@]})); then rm -rf "${lib_dirs[@]}"; fi
}

# cleanup_on_exit DIR...: on exit, stops every service started through this
# file and removes the DIRs (more may be added to lib_dirs later). INT and
# TERM become an ordinary exit (130, 143), so this runs then too.
cleanup_on_exit() {
  lib_dirs+=("$@")
  trap lib_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# free_port: a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
  "$lib_python" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# start_redis DIR [ARG...]: redis-server on a free 127.0.0.1 port, without
# persistence unless ARGs say otherwise, its data and redis.log in DIR; sets
# redis_port and redis_pid. The server answering must be ours (its pid), not
# another one already listening there; five ports are tried. Exits 1 when
# it does not start.
start_redis() {
  local dir=$1 port i
  shift
  redis_port=""
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    setsid redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
      --save "" --appendonly no --logfile "$dir/redis.log" "$@" \
      </dev/null >/dev/null 2>&1 &
    redis_pid=$!
    lib_pids+=("$redis_pid")
    for ((i = 0; i < 100; i++)); do
      kill -0 "$redis_pid" 2>/dev/null || break
      if redis-cli -p "$port" INFO server 2>/dev/null | tr -d '\r' |
        grep -qx "process_id:$redis_pid"; then
        # shellcheck disable=SC2034  # read by the scripts
        redis_port=$port
        return 0
      fi
      sleep 0.1
    done
    stop_service "$redis_pid"
  done
  echo "$prog: redis-server did not start:" >&2
  tail -n 5 "$dir/redis.log" >&2 || true
  exit 1
}

# start_distribution DIR: the CNCF distribution registry (docker-registry)
# on a free 127.0.0.1 port, plain http, no auth, filesystem storage in
# DIR/storage, its access log in DIR/access.log; sets registry_port and
# registry_pid. Three ports are tried; exits 1 when it does not start.
start_distribution() {
  local dir=$1 port i
  registry_port=""
  mkdir -p "$dir/storage"
  for _ in 1 2 3; do
    port=$(free_port)
    printf '%s\n' "version: 0.1" "log:" "  level: warn" "  accesslog:" \
      "    disabled: false" "storage:" "  filesystem:" \
      "    rootdirectory: $dir/storage" "http:" "  addr: 127.0.0.1:$port" \
      "  secret: $prog-$port" >"$dir/config.yml"
    setsid docker-registry serve "$dir/config.yml" </dev/null \
      >"$dir/access.log" 2>"$dir/registry.log" &
    registry_pid=$!
    lib_pids+=("$registry_pid")
    for ((i = 0; i < 100; i++)); do
      kill -0 "$registry_pid" 2>/dev/null || break
      if curl -sf -o /dev/null "http://127.0.0.1:$port/v2/"; then
        # shellcheck disable=SC2034  # read by the scripts
        registry_port=$port
        return 0
      fi
      sleep 0.05
    done
    stop_service "$registry_pid"
  done
  echo "$prog: docker-registry did not start:" >&2
  tail -n 5 "$dir/registry.log" >&2 || true
  exit 1
}

# example_repository DIR OWNER: examples/hello-ci committed once in
# DIR/hello-ci and cloned bare to DIR/git/OWNER/hello-ci.git, the layout the
# git test server serves; sets `commit`. Author, committer and dates come
# from the caller's GIT_* variables.
example_repository() {
  local crate=$1/hello-ci
  mkdir -p "$crate" "$1/git/$2"
  tar -C "$lib_root/examples/hello-ci" --exclude=./target -cf - . |
    tar -C "$crate" -xf -
  git -C "$crate" init -q -b main
  git -C "$crate" add -A
  git -C "$crate" commit -q -m "hello-ci"
  # shellcheck disable=SC2034  # read by the scripts
  commit=$(git -C "$crate" rev-parse HEAD)
  git clone -q --bare "$crate" "$1/git/$2/hello-ci.git"
}

# start_git_server DIR ROOT PORT [ARG...]: the git test server for the bare
# repositories under ROOT on 127.0.0.1:PORT (0: a free one), with ARGs
# (--auth-file, --log, ...); its stdout and stderr in DIR/git-server.out and
# .err. Sets git_port and git_pid; returns 1 (git_pid "") when it does not
# start.
start_git_server() {
  local dir=$1 root=$2 port=$3 i
  shift 3
  git_port=""
  : >"$dir/git-server.out"
  setsid "$lib_python" "$lib_root/tests/testing/git_http_server.py" \
    --root "$root" --port "$port" "$@" \
    </dev/null >"$dir/git-server.out" 2>"$dir/git-server.err" &
  git_pid=$!
  lib_pids+=("$git_pid")
  for ((i = 0; i < 100; i++)); do
    git_port=$(awk '$1 == "ready" { print $2 }' "$dir/git-server.out")
    [[ -z $git_port ]] || return 0
    kill -0 "$git_pid" 2>/dev/null || break
    sleep 0.1
  done
  stop_service "$git_pid"
  git_pid=""
  return 1
}

# soak_repositories DIR ROOT: the soaks' git side, in DIR. The fixture crates
# of ROOT/tests/fixtures `passing` (two commits: the second changes the
# manifest, so it has a build cache key of its own and builds of the two run
# side by side) and `failing_test`, as bare repositories DIR/git/soak/
# passing.git and failing.git, their commits appended to DIR/commits.passing
# and DIR/commits.failing; then a git server with Basic auth (user soak,
# password a random $git_token, DIR/git-auth) serving them, its requests in
# DIR/git-requests.log; sets git_port through start_git_server. Git runs
# without the user's configuration from here on (exported). Exits 1 when the
# server does not start.
soak_repositories() {
  local dir=$1 root=$2 name src
  export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
  export GIT_AUTHOR_NAME="CI soak" GIT_AUTHOR_EMAIL="soak@example.invalid"
  export GIT_COMMITTER_NAME="CI soak" GIT_COMMITTER_EMAIL="soak@example.invalid"
  mkdir -p "$dir/git/soak"
  for name in passing:passing failing_test:failing; do
    src=$dir/src/${name#*:}
    mkdir -p "$src"
    tar -C "$root/tests/fixtures/${name%%:*}" --exclude=./target -cf - . |
      tar -C "$src" -xf -
    git -C "$src" init -q -b main
    git -C "$src" add -A
    git -C "$src" commit -q -m "${name%%:*}"
    git -C "$src" rev-parse HEAD >>"$dir/commits.${name#*:}"
  done
  sed -i 's/^\[package\]$/[package]\ndescription = "second commit"/' \
    "$dir/src/passing/Cargo.toml"
  git -C "$dir/src/passing" add -A
  git -C "$dir/src/passing" commit -q -m "second commit"
  git -C "$dir/src/passing" rev-parse HEAD >>"$dir/commits.passing"
  for name in passing failing; do
    git clone -q --bare "$dir/src/$name" "$dir/git/soak/$name.git"
  done
  git_token=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
  (umask 077 && printf 'soak:%s\n' "$git_token" >"$dir/git-auth")
  if ! start_git_server "$dir" "$dir/git" 0 --auth-file "$dir/git-auth" \
    --log "$dir/git-requests.log"; then
    echo "$prog: the git server did not start:" >&2
    cat "$dir/git-server.err" >&2
    exit 1
  fi
}

# stop_soak_agents DIR: ends the soaks' agent loops (their pids in the array
# loop_pids) and every agent run they started (the pid on the first line of
# each DIR/agents/agent*.pid): DIR/stop tells the loops not to start
# another, then all are SIGKILLed. A loop stopped between starting a run and
# recording it leaves its file, so the files are read again afterwards.
stop_soak_agents() {
  local dir=$1 pid f pass
  : >"$dir/stop"
  for pass in runs loops runs; do
    if [[ $pass == loops ]]; then
      for pid in "${loop_pids[@]}"; do stop_pid "$pid"; done
      loop_pids=()
      continue
    fi
    for f in "$dir"/agents/agent*.pid; do
      [[ -e $f ]] || continue
      read -r pid _ 2>/dev/null <"$f" || continue
      kill -KILL "$pid" 2>/dev/null || true
    done
  done
}

# soak_require_tools: what both soaks run (redis, cargo, git, python3 and
# PID namespaces through unshare), cargo from ~/.cargo/bin when there. A
# missing one ends the script: exit 77 (skipped), or 1 under CI=true, where
# a missing tool is a failure.
soak_require_tools() {
  local tool
  if [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  soak_missing_() {
    echo "$prog: $1" >&2
    if [[ ${CI:-} == true ]]; then exit 1; fi
    exit 77
  }
  for tool in redis-server redis-cli cargo unshare git python3 setsid; do
    command -v "$tool" >/dev/null || soak_missing_ "$tool not found"
  done
  unshare --pid --fork --kill-child true 2>/dev/null ||
    soak_missing_ "unshare --pid does not work here (needs root or user namespaces)"
}
