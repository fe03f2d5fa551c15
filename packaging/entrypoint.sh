#!/bin/sh
# Container entrypoint of the CI agent: one job per run.
#
#   ci-consume   claims a job from the Redis stream, fetches its commit into
#                <workdir>/src and prints the path of <workdir>/job.json
#   ci-build     --job <workdir>/job.json: runs the Rust pipeline, streams the
#                log to Redis, finalizes the job's status and acks it
#
# Settings come from the environment only (the tools read most of them
# themselves; the others are turned into flags here). No argument is taken
# but --help.
#
#   read by both         REDIS_PASSWORD[_FILE], REDIS_CA_FILE,
#                        REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE,
#                        REDIS_SENTINEL_USERNAME, REDIS_SENTINEL_PASSWORD[_FILE],
#                        CI_REDIS_MIN_REPLICAS, CI_REDIS_WAIT_TIMEOUT
#   read by ci-consume   REDIS_URL, POD_NAME,
#                        CI_WORKDIR, CI_CACHE_DIR, CI_CA_FILE,
#                        GIT_USERNAME, GIT_TOKEN[_FILE]
#   read by ci-build     CI_CACHE_DIR (build cache),
#                        CI_CARGO_HOME, CI_TARGET_DIR, CI_CARGO_CONFIG,
#                        CI_SECRET_ENV, CI_SCCACHE=true|false,
#                        CI_IMAGE_BUILDER (auto|buildah|docker|none),
#                        CI_IMAGE_STORAGE_DIR (buildah's storage),
#                        CI_METRICS_PUSHGATEWAY (grouped by POD_NAME);
#                        for the image push REGISTRY_URL (else GITEA_URL's
#                        host), REGISTRY_USERNAME, REGISTRY_TOKEN[_FILE],
#                        CI_CA_FILE; for private dependencies
#                        GIT_USERNAME, GIT_TOKEN[_FILE] (else GITEA_TOKEN),
#                        CI_GIT_CREDENTIAL_HOSTS, CI_CARGO_REGISTRIES and
#                        CI_CARGO_REGISTRY_<NAME>_TOKEN[_FILE];
#                        REGISTRY_PASSWORD (also _FILE) only to mask it in
#                        the job log
#   read by both         CIAGENT_LOG_LEVEL=debug|info|warning|error
#   flags of ci-consume  CI_STREAM (--stream), CI_GROUP (--group),
#                        CI_WAIT (--wait, seconds), CI_LEASE (--lease),
#                        CI_MAX_DELIVERIES (--max-deliveries),
#                        CI_MAX_ENTRY_BYTES (--max-entry-bytes: larger
#                        stream entries are dead-lettered unread),
#                        CI_CREATE_GROUP=true|false (--create-group),
#                        CI_FETCH_TIMEOUT (--fetch-timeout)
#   flags of ci-build    CI_JOB_TIMEOUT (--timeout), CI_STEP_TIMEOUT
#                        (--step-timeout), CI_GRACE (--grace),
#                        CI_CLIPPY_WARNINGS_FAIL=true|false,
#                        CI_LOG_MAX_BYTES (--log-max-bytes),
#                        CI_RESULT_FILE (--result; default: a temporary
#                        file, read below), CI_METRICS_FILE
#                        (--metrics-file)
#   this script          CI_CONSUME_BIN, CI_BUILD_BIN: the tools (default:
#                        ci-consume and ci-build on PATH);
#                        CI_EXIT_CODE=agent|job (below)
#
# Secrets (REDIS_PASSWORD, GIT_TOKEN, ...) stay in the environment: they are
# never put on a command line, and this script prints no setting's value.
# Prefer REDIS_PASSWORD to a password inside REDIS_URL.
#
# Exit codes. With CI_EXIT_CODE=agent (the default) the exit code says
# whether the agent did its part; the job's own outcome is in its status hash
# (ci:job:{<id>}). A pod of a KEDA ScaledJob therefore completes whenever the
# job reached a final state, and fails only when a retry could help or the
# setup needs fixing:
#
#   ci-consume / ci-build exit            meaning                      exit
#   ci-consume 3                          no job within CI_WAIT          0
#   ci-consume 4                          job finalized during intake    0
#                                         (error, e.g. bad git token or
#                                         unknown commit; or cancelled)
#   ci-consume 1                          transient failure; the job,    1
#                                         if any, was requeued
#   ci-consume 2 / ci-build 2             configuration or usage error;  2
#                                         a job ci-build could read was
#                                         requeued (counting a delivery)
#   ci-build 0                            job finalized success          0
#   ci-build 1                            job finalized failed or error  0
#   ci-build 1 without a result file      ci-build failed before it      1
#                                         finished the job (e.g. it
#                                         could not become a child
#                                         subreaper); the job waits for
#                                         its lease to lapse
#   ci-build 124 / 130                    job finalized timeout /        0
#                                         cancelled
#   ci-build 75                           not finished here: requeued,  75
#                                         lease lost, or Redis
#                                         unreachable when finalizing
#   ci-build 143, or SIGTERM/SIGINT       terminated; a claimed job was 143
#   received by this script               requeued
#   anything else (a tool killed, ...)    passed through
#
# With CI_EXIT_CODE=job, finalized outcomes are not folded into 0: ci-build's
# 1, 124 and 130 pass through and ci-consume 4 gives 1, so a person or a
# script running one job sees its result in the exit code.
#
# SIGTERM and SIGINT are forwarded (as SIGTERM, repeated until it exits) to
# the tool that is running: ci-consume stops waiting, or requeues the job it
# is fetching; ci-build stops the build and requeues the job (its processes
# get SIGTERM, then SIGKILL after CI_GRACE seconds: give the pod a
# termination grace period longer than that). If the signal lands after
# ci-consume has claimed a job but before ci-build runs, ci-build is still
# started and then stopped, because only it can requeue the job at once
# (else the job waits for its lease to lapse). Started as a background job of
# another script, this script inherits SIGINT ignored and cannot trap it:
# send SIGTERM.
#
# Logs: one JSON object per line on stderr, like the tools'.
set -eu

usage() {
  sed -n '2,/^set -eu$/{/^set /d;s/^# \{0,1\}//;p}' "$0"
}

tab=$(printf '\t')

# json_escape STRING: STRING as the inside of a JSON string (backslash,
# quote, tab and newline escaped). The newline printf adds ends the last
# record, so a trailing newline of STRING is kept as \n.
json_escape() {
  printf '%s\n' "$1" |
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e "s/$tab/\\\\t/g" |
    awk '{ printf "%s%s", sep, $0; sep = "\\n" }'
}

# is_integer STRING: true for an optional minus and at least one digit.
is_integer() {
  case ${1#-} in
    "" | *[!0-9]*) return 1 ;;
  esac
}

# log LEVEL MESSAGE [KEY VALUE]...: one JSON line on stderr. Integers are
# written as numbers. Never pass a setting's value here.
log() {
  log_line=$(printf '{"ts":"%s","level":"%s","msg":"%s"' \
    "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$1" "$(json_escape "$2")")
  shift 2
  while [ $# -ge 2 ]; do
    if is_integer "$2"; then
      log_line="$log_line,\"$1\":$2"
    else
      log_line="$log_line,\"$1\":\"$(json_escape "$2")\""
    fi
    shift 2
  done
  printf '%s}\n' "$log_line" >&2
}

case "${1:-}" in
  "") ;;
  -h | --help)
    usage
    exit 0
    ;;
  *)
    log error "entrypoint: unexpected argument; settings come from the environment (see --help)"
    exit 2
    ;;
esac

exit_mode=${CI_EXIT_CODE:-agent}
if [ "$exit_mode" != agent ] && [ "$exit_mode" != job ]; then
  log error "entrypoint: CI_EXIT_CODE must be agent or job"
  exit 2
fi

consume_bin=${CI_CONSUME_BIN:-ci-consume}
build_bin=${CI_BUILD_BIN:-ci-build}
for tool in "$consume_bin" "$build_bin"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log error "entrypoint: tool not found (set CI_CONSUME_BIN / CI_BUILD_BIN or PATH)" tool "$tool"
    exit 2
  fi
done

# flags_from VARIABLE=--flag...: prints one shell word per set VARIABLE,
# "--flag=value" quoted for eval. POSIX sh has no arrays, so the argument
# lists are built as quoted strings and expanded with `eval set --`. Only
# non-secret settings go through here.
flags_from() {
  for pair in "$@"; do
    eval "flag_value=\${${pair%%=*}:-}"
    if [ -n "$flag_value" ]; then
      # Single-quoted, with each ' written as '\''.
      printf " '%s'" "${pair#*=}=$(printf '%s\n' "$flag_value" | sed "s/'/'\\\\''/g")"
    fi
  done
}

consume_args=$(flags_from CI_STREAM=--stream CI_GROUP=--group CI_WAIT=--wait \
  CI_LEASE=--lease CI_MAX_DELIVERIES=--max-deliveries \
  CI_MAX_ENTRY_BYTES=--max-entry-bytes CI_CREATE_GROUP=--create-group \
  CI_FETCH_TIMEOUT=--fetch-timeout)
build_args=$(flags_from CI_JOB_TIMEOUT=--timeout CI_STEP_TIMEOUT=--step-timeout \
  CI_GRACE=--grace CI_CLIPPY_WARNINGS_FAIL=--clippy-warnings-fail \
  CI_LOG_MAX_BYTES=--log-max-bytes CI_METRICS_FILE=--metrics-file)

# --- running a tool with signal forwarding --------------------------------

child=""      # pid of the running tool
terminating=0 # a SIGTERM/SIGINT arrived
signalled=0   # ... and interrupted the current wait

# shellcheck disable=SC2317  # invoked by trap
on_signal() {
  terminating=1
  signalled=1
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null || true
  fi
}
trap on_signal TERM INT

# run_tool OUTFILE CMD...: runs CMD in the background with stdout to OUTFILE
# ("-" for ours), forwards signals to it, and sets `rc` to its exit status.
#
# The tool starts with SIGTERM ignored, which lasts until it installs its own
# handler (at once, after reading its flags). A SIGTERM in that window would
# otherwise kill it outright, leaving a claimed job `running` until its lease
# lapses; ignored, it is lost instead, so once stopping, SIGTERM is repeated
# until the tool exits. (This script ignores SIGTERM only while it forks.)
#
# `wait` returns early (128 + the signal's number) when a trapped signal
# arrives; the status is then collected by waiting again: the shell keeps it
# until a `wait` has reported it. A signal that lands just after `wait`
# returned the tool's own status runs the trap too; that status is kept
# unless it looks like an interruption (130, 143), and then waiting again
# answers 127 (no such child) and it stands all the same.
run_tool() {
  run_out=$1
  shift
  # Ignored here for the instant of the fork, so the child starts ignoring it.
  trap '' TERM
  if [ "$run_out" = - ]; then
    "$@" &
  else
    "$@" >"$run_out" &
  fi
  child=$!
  trap on_signal TERM
  rc=""
  while true; do
    if [ "$terminating" = 1 ]; then
      while kill -0 "$child" 2>/dev/null; do
        kill -TERM "$child" 2>/dev/null || true
        sleep 0.5
      done
    fi
    signalled=0
    wait_rc=0
    wait "$child" || wait_rc=$?
    if [ "$signalled" = 1 ]; then
      case $wait_rc in
        # Interrupted (or the tool's own 130/143, read just before the
        # signal): wait again.
        130 | 143)
          rc=$wait_rc
          continue
          ;;
        # Already reported by the wait before: that status stands.
        127)
          [ -n "$rc" ] || rc=127
          break
          ;;
      esac
    fi
    rc=$wait_rc
    break
  done
  child=""
}

job_out=$(mktemp)
# ci-build writes its result file once it has finished the job, whatever the
# outcome; its exit 1 without one means it failed before (it could not become
# a child subreaper, ...), and the job is not finished.
result_file=${CI_RESULT_FILE:-}
own_result=""
if [ -z "$result_file" ]; then
  own_result=$(mktemp)
  result_file=$own_result
fi
trap 'rm -f "$job_out" ${own_result:+"$own_result"}' EXIT

log info "entrypoint: claiming a job"
eval "set -- $consume_args"
# ${1+"$@"}: older shells (posh) count an empty "$@" as unset under set -u.
run_tool "$job_out" "$consume_bin" ${1+"$@"}
consume_rc=$rc
job_file=$(head -n 1 "$job_out")

if [ "$consume_rc" != 0 ]; then
  code=$consume_rc
  case $consume_rc in
    3) code=0 what="no job" ;;
    4)
      what="job ended during intake (see its status hash)"
      if [ "$exit_mode" = agent ]; then code=0; else code=1; fi
      ;;
    1) what="transient failure; any claimed job was requeued" ;;
    2) what="configuration error" ;;
    *) what="ci-consume ended abnormally" ;;
  esac
  if [ "$terminating" = 1 ]; then
    code=143
    what="terminated while claiming; $what"
  fi
  log info "entrypoint: done" stage consume tool_exit "$consume_rc" exit "$code" outcome "$what"
  exit "$code"
fi
if [ -z "$job_file" ]; then
  log error "entrypoint: ci-consume succeeded but printed no job file" exit 1
  exit 1
fi

log info "entrypoint: building" job_file "$job_file"
eval "set -- $build_args"
rm -f "$result_file"
run_tool - "$build_bin" --job "$job_file" ${1+"$@"} --result="$result_file"
build_rc=$rc

code=$build_rc
if [ "$build_rc" = 1 ] && [ ! -s "$result_file" ]; then
  build_rc_meaning=unfinished
else
  build_rc_meaning=$build_rc
fi
case $build_rc_meaning in
  0) what="success" ;;
  unfinished)
    what="ci-build failed before finishing the job (e.g. could not become a child subreaper); the job waits for its lease to lapse"
    ;;
  1 | 124 | 130)
    case $build_rc in
      1) what="job failed or ended in error" ;;
      124) what="job timed out" ;;
      130) what="job cancelled" ;;
    esac
    if [ "$exit_mode" = agent ]; then code=0; fi
    ;;
  75) what="not finished here; the job will run again" ;;
  143) what="terminated; the job was requeued" ;;
  2) what="configuration error; the job, if readable, was requeued" ;;
  *) what="ci-build ended abnormally" ;;
esac
# A job finalized before the stop took effect keeps its code.
if [ "$terminating" = 1 ] && [ "$code" != 0 ]; then code=143; fi
log info "entrypoint: done" stage build tool_exit "$build_rc" exit "$code" outcome "$what"
exit "$code"
