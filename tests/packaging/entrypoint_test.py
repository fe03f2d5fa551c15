#!/usr/bin/env python3
"""The contract of packaging/entrypoint.sh, checked with stand-in tools.

    entrypoint_test.py ENTRYPOINT [SHELL...]

Runs ENTRYPOINT under each SHELL (default: every one of dash, posh, bash and
busybox sh that is installed) with stub ci-consume / ci-build programs whose
exit codes, output and signal handling the test chooses, and checks what the
script's header promises: --help, argument and CI_EXIT_CODE errors, the
settings turned into flags (never other values), the exit-code mapping in
both CI_EXIT_CODE modes, SIGTERM/SIGINT forwarded and repeated until the
tool exits (the tool starts with SIGTERM ignored), and one JSON object per
log line. The stubs are Python because a shell cannot trap a signal it
inherited ignored, which is exactly what the real tools must do.
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

STUB = r'''#!/usr/bin/env python3
import os, signal, sys, time
role = os.path.basename(sys.argv[0])
key = role.replace("-", "_").upper()
state = os.environ["STUB_DIR"]
with open(os.path.join(state, role + ".args"), "w") as f:
    f.write("\n".join(sys.argv[1:]))
with open(os.path.join(state, role + ".sigterm"), "w") as f:
    f.write("ignored" if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN else "default")
for arg in sys.argv[1:]:
    # ci-build's result file, written as the real one does once the job is
    # finished (here: whatever the exit code, unless told otherwise).
    if arg.startswith("--result=") and "STUB_CI_BUILD_NO_RESULT" not in os.environ:
        with open(arg[len("--result="):], "w") as f:
            f.write("{}\n")
if role == "ci-consume" and "STUB_JOB_FILE" in os.environ:
    print(os.environ["STUB_JOB_FILE"], flush=True)
delay = os.environ.get("STUB_" + key + "_IGNORE_TERM_FOR")
if delay is not None:
    # Like the real tools: SIGTERM stays ignored until the handler is in.
    open(os.path.join(state, role + ".started"), "w").close()
    time.sleep(float(delay))
    terms = []
    signal.signal(signal.SIGTERM, lambda *_: terms.append(1))
    while not terms:
        time.sleep(0.05)
    with open(os.path.join(state, role + ".terms"), "a") as f:
        f.write("term\n")
    sys.exit(int(os.environ["STUB_" + key + "_TERM_RC"]))
sys.exit(int(os.environ.get("STUB_" + key + "_RC", "0")))
'''

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL", what, file=sys.stderr)


class Run:
    def __init__(self, shell, entrypoint, tmp, env=None, args=(), signal_at=None):
        self.stub_dir = tempfile.mkdtemp(dir=tmp)
        bin_dir = os.path.join(self.stub_dir, "bin")
        os.mkdir(bin_dir)
        for role in ("ci-consume", "ci-build"):
            path = os.path.join(bin_dir, role)
            with open(path, "w") as f:
                f.write(STUB)
            os.chmod(path, stat.S_IRWXU)
        base = {
            "PATH": bin_dir + ":/usr/bin:/bin",
            "STUB_DIR": self.stub_dir,
            "STUB_JOB_FILE": "/work dir/job.json",
        }
        base.update(env or {})
        base = {k: v for k, v in base.items() if v is not None}
        proc = subprocess.Popen([shell, entrypoint, *args], env=base,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        if signal_at is not None:
            role, sig = signal_at
            marker = os.path.join(self.stub_dir, role + ".started")
            deadline = time.monotonic() + 10
            while not os.path.exists(marker) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.1)
            proc.send_signal(sig)
        try:
            self.out, self.err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.out, self.err = proc.communicate()
        self.rc = proc.returncode

    def read(self, name):
        try:
            with open(os.path.join(self.stub_dir, name)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def logs(self):
        lines = []
        for raw in self.err.splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"unparsed": raw})
        return lines


def test_shell(shell, entrypoint, tmp):
    name = os.path.basename(shell) if shell != "busybox-sh" else shell
    cmd = [shutil.which("busybox"), "sh"] if shell == "busybox-sh" else None
    runner = shell
    if cmd:
        # busybox needs its applet name: a tiny wrapper.
        runner = os.path.join(tmp, "busybox-sh")
        with open(runner, "w") as f:
            f.write('#!/bin/sh\nexec busybox sh "$@"\n')
        os.chmod(runner, stat.S_IRWXU)

    def run(**kw):
        return Run(runner, entrypoint, tmp, **kw)

    def expect(cond, what):
        check(cond, f"[{name}] {what}")

    r = run(args=["--help"])
    expect(r.rc == 0 and "CI_EXIT_CODE" in r.out and "set -eu" not in r.out
           and not r.out.startswith("!"), f"--help prints the header (rc {r.rc})")
    r = run(args=["--wait=3"])
    expect(r.rc == 2 and r.read("ci-consume.args") is None, f"an argument is exit 2 (rc {r.rc})")
    r = run(env={"CI_EXIT_CODE": "both"})
    expect(r.rc == 2, f"a bad CI_EXIT_CODE is exit 2 (rc {r.rc})")
    r = run(env={"CI_BUILD_BIN": "no-such-ci-build"})
    expect(r.rc == 2 and "no-such-ci-build" in r.err, f"a missing tool is exit 2 (rc {r.rc})")

    # Settings become flags, quoted as given; nothing else is passed.
    r = run(env={"CI_STREAM": "jobs 'a\" b", "CI_WAIT": "5", "CI_GROUP": "",
                 "CI_MAX_ENTRY_BYTES": "65536",
                 "CI_CREATE_GROUP": "true", "CI_JOB_TIMEOUT": "60",
                 "CI_RESULT_FILE": "/tmp/r $x.json", "REDIS_PASSWORD": "s3cret"})
    expect(r.rc == 0, f"a successful job is exit 0 (rc {r.rc}, {r.err})")
    expect(r.read("ci-consume.args") ==
           "--stream=jobs 'a\" b\n--wait=5\n--max-entry-bytes=65536\n--create-group=true",
           f"ci-consume's flags: {r.read('ci-consume.args')!r}")
    expect(r.read("ci-build.args") == "--job\n/work dir/job.json\n--timeout=60\n--result=/tmp/r $x.json",
           f"ci-build's flags: {r.read('ci-build.args')!r}")
    expect("s3cret" not in r.err + r.out, "no secret in the output")
    logs = r.logs()
    expect(all("unparsed" not in line for line in logs), f"every log line is JSON: {r.err!r}")
    expect(any(line.get("job_file") == "/work dir/job.json" for line in logs), "the job file is logged")
    done = [line for line in logs if line.get("msg") == "entrypoint: done"]
    expect(len(done) == 1 and done[0].get("exit") == 0 and done[0].get("tool_exit") == 0
           and done[0].get("stage") == "build", f"the done line: {done}")
    expect(r.read("ci-build.sigterm") == "ignored", "ci-build starts with SIGTERM ignored")

    # A job file path with a quote, a tab and a newline still logs as JSON.
    r = run(env={"STUB_JOB_FILE": "a\"b\\c\td"})
    logs = r.logs()
    expect(any(line.get("job_file") == "a\"b\\c\td" for line in logs),
           f"escaped JSON string: {r.err!r}")

    consume_cases = [  # ci-consume exit, agent mode, job mode
        (3, 0, 0), (4, 0, 1), (1, 1, 1), (2, 2, 2), (9, 9, 9)]
    for tool_rc, agent_rc, job_rc in consume_cases:
        for mode, want in (("agent", agent_rc), ("job", job_rc)):
            r = run(env={"STUB_CI_CONSUME_RC": str(tool_rc), "CI_EXIT_CODE": mode})
            expect(r.rc == want and r.read("ci-build.args") is None,
                   f"ci-consume {tool_rc}, {mode}: exit {r.rc}, want {want}")
    r = run(env={"STUB_JOB_FILE": None})
    expect(r.rc == 1 and r.read("ci-build.args") is None, f"no job file printed: exit {r.rc}")

    build_cases = [  # ci-build exit, agent mode, job mode
        (0, 0, 0), (1, 0, 1), (124, 0, 124), (130, 0, 130), (75, 75, 75),
        (143, 143, 143), (2, 2, 2), (137, 137, 137)]
    for tool_rc, agent_rc, job_rc in build_cases:
        for mode, want in (("agent", agent_rc), ("job", job_rc)):
            r = run(env={"STUB_CI_BUILD_RC": str(tool_rc), "CI_EXIT_CODE": mode})
            expect(r.rc == want, f"ci-build {tool_rc}, {mode}: exit {r.rc}, want {want}")
    # Without CI_RESULT_FILE the entrypoint still asks for a result file.
    r = run()
    build_args = (r.read("ci-build.args") or "").split("\n")
    expect(len(build_args) == 3 and build_args[2].startswith("--result=/"),
           f"ci-build gets a temporary result file: {build_args!r}")
    # ci-build 1 before finishing the job (no subreaper, ...): no result
    # file, so the job is not finished and the agent failed.
    for mode in ("agent", "job"):
        r = run(env={"STUB_CI_BUILD_RC": "1", "STUB_CI_BUILD_NO_RESULT": "1",
                     "CI_EXIT_CODE": mode})
        done = [line for line in r.logs() if line.get("msg") == "entrypoint: done"]
        expect(r.rc == 1 and done and "before finishing" in done[-1].get("outcome", ""),
               f"ci-build 1 without a result, {mode}: exit {r.rc}, {done!r}")
    # A stale result file from an earlier run does not count.
    stale = os.path.join(tmp, "stale-result.json")
    with open(stale, "w") as f:
        f.write("{}\n")
    r = run(env={"STUB_CI_BUILD_RC": "1", "STUB_CI_BUILD_NO_RESULT": "1",
                 "CI_RESULT_FILE": stale})
    expect(r.rc == 1, f"ci-build 1 with a stale result file: exit {r.rc}")
    # ci-build gives back a job it could read before exiting 2: the log says so.
    r = run(env={"STUB_CI_BUILD_RC": "2"})
    done = [line for line in r.logs() if line.get("msg") == "entrypoint: done"]
    expect(done and "requeued" in done[-1].get("outcome", ""),
           f"ci-build 2: the outcome names the requeue: {done!r}")

    # Signals: forwarded as SIGTERM and repeated while the tool still ignores
    # it (its first 1.2 s), then the tool's status decides.
    for sig in (signal.SIGTERM, signal.SIGINT):
        r = run(env={"STUB_CI_BUILD_IGNORE_TERM_FOR": "1.2", "STUB_CI_BUILD_TERM_RC": "143"},
                signal_at=("ci-build", sig))
        expect(r.rc == 143 and r.read("ci-build.terms") == "term\n"
               and r.read("ci-build.sigterm") == "ignored",
               f"{sig.name} during ci-build: exit {r.rc}, terms {r.read('ci-build.terms')!r}")
        r = run(env={"STUB_CI_BUILD_IGNORE_TERM_FOR": "0.2", "STUB_CI_BUILD_TERM_RC": "0"},
                signal_at=("ci-build", sig))
        expect(r.rc == 0, f"{sig.name}, job finalized success meanwhile: exit {r.rc}")
        r = run(env={"STUB_CI_BUILD_IGNORE_TERM_FOR": "0.2", "STUB_CI_BUILD_TERM_RC": "1",
                     "CI_EXIT_CODE": "job"},
                signal_at=("ci-build", sig))
        expect(r.rc == 143, f"{sig.name}, job failed meanwhile, job mode: exit {r.rc}")
        r = run(env={"STUB_CI_CONSUME_IGNORE_TERM_FOR": "0.8", "STUB_CI_CONSUME_TERM_RC": "3"},
                signal_at=("ci-consume", sig))
        expect(r.rc == 143 and r.read("ci-build.args") is None
               and r.read("ci-consume.terms") == "term\n",
               f"{sig.name} while claiming: exit {r.rc}")
        # Claimed just as the signal came: ci-build still runs, to requeue.
        r = run(env={"STUB_CI_CONSUME_IGNORE_TERM_FOR": "0.2", "STUB_CI_CONSUME_TERM_RC": "0",
                     "STUB_CI_BUILD_RC": "143"},
                signal_at=("ci-consume", sig))
        expect(r.rc == 143 and r.read("ci-build.args") is not None,
               f"{sig.name} after the claim: ci-build runs, exit {r.rc}")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    entrypoint = os.path.abspath(sys.argv[1])
    shells = sys.argv[2:]
    if not shells:
        shells = [p for p in (shutil.which(s) for s in ("dash", "posh", "bash")) if p]
        if shutil.which("busybox"):
            shells.append("busybox-sh")
    tmp = tempfile.mkdtemp(prefix="entrypoint-test.")
    try:
        for shell in shells:
            test_shell(shell, entrypoint, tmp)
            print(f"ran the checks under {shell}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
