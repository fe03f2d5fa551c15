#!/usr/bin/python3
"""Helper of scripts/soak.sh: the producer, the progress probe and the checker.

  soak.py enqueue  --port P --dir D --jobs N --seed S --pass-repo URL
                   --pass-commits C1,C2 --fail-repo URL --fail-commit C
                   [--poison-pill BYTES]
  soak.py progress --port P --dir D
  soak.py poison   --port P --bytes N   (one poison-pill entry, for measuring)
  soak.py monitor  (--port P | --socket S) --out FILE
  soak.py check    --port P --dir D --agents N --kills-requested K

`enqueue` writes D/plan.json: one row per job with its kind and the outcome
it must reach. `progress` prints `<terminal> <well-formed> <pending> <unread 0|1>`.
`check` reads Redis, the agents' JSON-lines logs (D/agents/agent*.log), the
MONITOR transcripts of every Redis lifetime (D/redis/monitor.*.txt) and the
soak's own records (D/kills.tsv, D/restarts.tsv), prints the figures and
exits 1 on any violation.

Poison-pill mode (`enqueue --poison-pill BYTES`, e.g. 300000000): one more
entry, at a random place in the queue, whose job document is BYTES long —
built inside Redis (EVAL with string.rep), so neither this script nor the
transcripts' reader holds it. Run the agents with an address-space limit
(`ulimit -v 1572864`, as a pod's 1.5 GiB memory limit): an agent that read
the entry would die on it, and so would the next one. `check` then requires
it dead-lettered once, unread (`dead_reason` "oversized entry: ...",
`dead_truncated` 1, `dead_entry_bytes` > BYTES), its status `error`, and
every other job to reach its outcome. Record the MONITOR transcript with
`soak.py monitor`, not `redis-cli MONITOR`: redis-cli looks for the end of a
line from its start on every read, so the entry's 300 MB MONITOR line never
completes and every later command stays queued behind it in Redis.

Only the standard library: a minimal RESP client is below.
"""

import argparse
import glob
import json
import os
import random
import re
import socket
import sys

STREAM = "ci-jobs"
GROUP = "ci-workers"
DEAD = "ci-jobs:dead"
TERMINAL = {"success", "failed", "timeout", "cancelled", "error"}


# --- Redis -------------------------------------------------------------------

class Redis:
    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("redis: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError("redis: unexpected reply %r" % line)

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))

    def call(self, *args):
        self.send(*args)
        return self._reply()

    def pipeline(self, commands):
        for command in commands:
            self.send(*command)
        return [self._reply() for _ in commands]


def as_dict(flat):
    flat = flat or []
    return dict(zip(flat[::2], flat[1::2]))


def status_key(job_id):
    return "ci:job:{%s}" % job_id


def now_iso():
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- enqueue -----------------------------------------------------------------

# Adds a job document padded to ARGV[2] bytes, built here so that the huge
# value never crosses the network. KEYS: stream. ARGV: job_id, bytes.
POISON_SCRIPT = """
local head = '{"job_id":"' .. ARGV[1] .. '","repo":"https://git.invalid/p.git",' ..
             '"branch":"main","commit":"' .. string.rep('a', 40) .. '","pad":"'
local pad = math.max(0, tonumber(ARGV[2]) - #head - 2)
return redis.call('XADD', KEYS[1], '*', 'job', head .. string.rep('x', pad) .. '"}')
"""


def make_plan(args):
    """Job rows: well-formed jobs on the passing and failing crates, a few
    that are well-formed but cannot be fetched (a branch full of shell
    syntax that names no branch), and malformed entries of four kinds."""
    rng = random.Random(args.seed)
    n = args.jobs
    malformed_each = max(1, n // 100)          # x4 kinds: 8 of 200, 4 of 30
    unfetchable = max(1, n // 100)             # 2 of 200, 1 of 30
    failing = max(2, n // 10)                  # 20 of 200, 3 of 30
    passing = n - 4 * malformed_each - unfetchable - failing
    if passing < 1:
        sys.exit("soak.py: --jobs %d is too small (at least 8)" % n)
    pwned = os.path.join(args.dir, "pwned")
    pass_commits = args.pass_commits.split(",")
    kinds = (["pass"] * passing + ["fail"] * failing +
             ["unfetchable"] * unfetchable + ["bad-json"] * malformed_each +
             ["no-commit"] * malformed_each + ["traversal"] * malformed_each +
             ["shell-branch"] * malformed_each)
    rng.shuffle(kinds)
    rows = []
    for i, kind in enumerate(kinds, 1):
        job_id = "soak-%04d-%s" % (i, kind)
        job = {"job_id": job_id, "repo": args.pass_repo, "branch": "main",
               "commit": pass_commits[i % len(pass_commits)],
               "timeout_s": 600, "steps": args.steps.split(",")}
        expected, key = "success", job_id
        if kind == "fail":
            job.update(repo=args.fail_repo, commit=args.fail_commit)
            expected = "failed"
        elif kind == "unfetchable":
            # A valid git branch name (no space, no ~^:?*[\) that would run
            # a command if anything passed it to a shell, and a commit that
            # does not exist: the fetch fails for good.
            job["branch"] = "main$(touch${IFS}%s)`touch${IFS}%s`" % (pwned, pwned)
            job["commit"] = "%040x" % rng.getrandbits(160)
            expected = "error"
        elif kind == "no-commit":
            del job["commit"]
            expected = "dead"
        elif kind == "traversal":
            job["job_id"] = "../" + job_id
            expected, key = "dead", None
        elif kind == "shell-branch":
            job["branch"] = "main; touch %s && echo pwned" % pwned
            expected = "dead"
        doc = json.dumps(job, separators=(",", ":"))
        if kind == "bad-json":
            doc = doc[: len(doc) // 2]            # cut in the middle
            expected, key = "dead", None
        rows.append({"job_id": job_id, "kind": kind, "expected": expected,
                     "status_key": status_key(key) if key else None,
                     "doc": doc})
    if args.poison_pill:
        job_id = "soak-poison"
        rows.insert(rng.randrange(len(rows) // 4, len(rows) // 2 + 1),
                    {"job_id": job_id, "kind": "poison", "expected": "dead",
                     "status_key": status_key(job_id), "doc": None,
                     "doc_bytes": args.poison_pill})
    return rows


def cmd_enqueue(args):
    rows = make_plan(args)
    r = Redis(args.port)
    if args.poison_pill:
        # Building the entry, and copying it to MONITOR, takes a while.
        r.sock.settimeout(600)
    try:
        r.call("XGROUP", "CREATE", STREAM, GROUP, "0", "MKSTREAM")
    except RuntimeError as e:
        if "BUSYGROUP" not in str(e):
            raise
    # As a producer does: status `queued` first, then the entry.
    commands = []
    for row in rows:
        now = now_iso()
        if row["status_key"]:
            commands.append(("DEL", row["status_key"]))
            commands.append(("HSET", row["status_key"], "status", "queued",
                             "job_id", row["job_id"], "attempt", "0",
                             "enqueued_at", now, "updated_at", now))
        if row["kind"] == "poison":
            commands.append(("EVAL", POISON_SCRIPT, "1", STREAM, row["job_id"],
                             str(row["doc_bytes"])))
        else:
            commands.append(("XADD", STREAM, "*", "job", row["doc"]))
    replies = iter(r.pipeline(commands))
    for row in rows:
        if row["status_key"]:
            next(replies)
            next(replies)
        row["entry_id"] = next(replies)
    with open(os.path.join(args.dir, "plan.json"), "w") as f:
        json.dump(rows, f, indent=1)
    counts = {}
    for row in rows:
        counts[row["kind"]] = counts.get(row["kind"], 0) + 1
    print("enqueued %d jobs: %s" % (len(rows), ", ".join(
        "%s %d" % kv for kv in sorted(counts.items()))))


def cmd_poison(args):
    r = Redis(args.port)
    try:
        r.call("XGROUP", "CREATE", STREAM, GROUP, "0", "MKSTREAM")
    except RuntimeError as e:
        if "BUSYGROUP" not in str(e):
            raise
    print(r.call("EVAL", POISON_SCRIPT, "1", STREAM, args.job_id, str(args.bytes)))


def cmd_monitor(args):
    """Writes Redis' MONITOR feed to --out, one line per command, as
    `redis-cli MONITOR` does, until killed. Looks for a line's end only in
    the bytes not yet searched, so a line of hundreds of MB costs one pass."""
    if args.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(args.socket)
    else:
        sock = socket.create_connection(("127.0.0.1", args.port))
    sock.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
    buf = bytearray()
    searched = 0
    with open(args.out, "wb") as out:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return 0
            buf += chunk
            while True:
                end = buf.find(b"\r\n", max(0, searched - 1))
                if end < 0:
                    searched = len(buf)
                    break
                line = bytes(buf[:end])
                del buf[:end + 2]
                searched = 0
                if line.startswith(b"+") and line != b"+OK":
                    out.write(line[1:] + b"\n")
                    out.flush()


# --- progress ----------------------------------------------------------------

def load_plan(d):
    with open(os.path.join(d, "plan.json")) as f:
        return json.load(f)


def group_info(r):
    for g in r.call("XINFO", "GROUPS", STREAM):
        g = as_dict(g)
        if g.get("name") == GROUP:
            return g
    return {}


def unread(r):
    """1 when the stream has entries the group never read, else 0. (The
    group's `lag` is no help here: Redis reports it as nil after loading
    the data from the append-only file, until the group reads again.)"""
    last = as_dict(r.call("XINFO", "STREAM", STREAM)).get("last-generated-id")
    return 0 if group_info(r).get("last-delivered-id") == last else 1


def cmd_progress(args):
    rows = [row for row in load_plan(args.dir) if row["expected"] != "dead"]
    r = Redis(args.port)
    statuses = r.pipeline([("HGET", row["status_key"], "status") for row in rows])
    terminal = sum(1 for s in statuses if s in TERMINAL)
    pending = r.call("XPENDING", STREAM, GROUP)[0]
    print(terminal, len(rows), pending, unread(r))


# --- check: MONITOR transcripts ----------------------------------------------

TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"')
ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b",
           '"': '"', "\\": "\\"}


def unquote(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "x" and i + 3 < len(s):
                out.append(chr(int(s[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append(ESCAPES.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def monitor_commands(path):
    """(client, [argv]) per complete MONITOR line; client is 'lua' for the
    commands a script ran, else the caller's address."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                break                       # cut off when Redis died
            if len(line) > 1 << 20:
                continue                    # a poison pill's XADD: no job write
            m = re.match(r"^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$", line.rstrip("\n"))
            if not m:
                continue
            yield m.group(1), [unquote(t) for t in TOKEN.findall(m.group(2))]


def audit_monitor(d, rows):
    """Replays every command Redis ran, in order, over all its lifetimes.

    For each job: the terminal status writes (HSET of `status` to a terminal
    value), each attributed to the script call that made it (consumer and
    delivery from the fenced script's ARGV[3], ARGV[4]) and compared with
    the job's latest claim (the claim script's HSET status running ...
    attempt N consumer C) at that moment; XACKs per entry; requeues."""
    by_key = {row["status_key"]: row for row in rows if row["status_key"]}
    key_of_entry = {row["entry_id"]: row["status_key"] for row in rows}
    latest_claim = {}        # status key -> (consumer, attempt)
    terminal_writes = {}     # status key -> [(status, consumer, delivery, ok)]
    acks = {}                # entry id -> count
    requeues = 0
    claims = 0
    files = sorted(glob.glob(os.path.join(d, "redis", "monitor.*.txt")))
    for path in files:
        caller = None        # argv of the script call being executed
        for client, argv in monitor_commands(path):
            if not argv:
                continue
            name = argv[0].upper()
            if client != "lua":
                caller = argv if name in ("EVALSHA", "EVAL") else None
                continue
            if name == "XACK" and len(argv) >= 4 and argv[1] == STREAM:
                for entry in argv[3:]:
                    acks[entry] = acks.get(entry, 0) + 1
                continue
            if name != "HSET" or len(argv) < 4 or argv[1] not in by_key:
                continue
            fields = as_dict(argv[2:])
            status = fields.get("status")
            key = argv[1]
            if status == "running" and "consumer" in fields:
                latest_claim[key] = (fields["consumer"], fields.get("attempt"))
                claims += 1
            elif status == "queued" and "requeued_at" in fields:
                requeues += 1
            elif status in TERMINAL:
                # Fenced scripts: KEYS stream, status key, ...; ARGV group,
                # entry id, consumer, delivery.
                consumer = delivery = None
                if caller and len(caller) > 2:
                    nkeys = int(caller[2])
                    script_args = caller[3 + nkeys:]
                    if len(script_args) >= 4:
                        consumer, delivery = script_args[2], script_args[3]
                owner = latest_claim.get(key)
                if "dead_letter_id" in fields and "consumer" in fields:
                    # A dead letter names its delivery itself; the claim
                    # script writes it for a delivery it has just taken.
                    consumer, delivery = fields["consumer"], fields.get("attempt")
                if by_key[key]["expected"] == "dead":
                    # Never started (begun=0): the dead letter is its only
                    # write; ownership is the fence's, checked by count.
                    fenced_ok = consumer is not None
                else:
                    fenced_ok = owner is not None and owner == (consumer, delivery)
                terminal_writes.setdefault(key, []).append(
                    (status, consumer, delivery, fenced_ok, owner))
    return {"files": len(files), "terminal_writes": terminal_writes,
            "acks": acks, "requeues": requeues, "claims": claims,
            "latest_claim": latest_claim, "key_of_entry": key_of_entry}


# --- check: agent logs -------------------------------------------------------

def agent_runs(d):
    """Runs of the entrypoint, in order per agent: consumer name, exit code
    (None when killed), and the JSON log lines of that run."""
    runs = []
    for path in sorted(glob.glob(os.path.join(d, "agents", "agent*.log"))):
        run = None
        with open(path, encoding="utf-8", errors="replace") as f:
            for raw in f:
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    entry = json.loads(raw)
                except ValueError:
                    if run is not None:
                        run["garbled"] += 1
                    continue
                if "soak" in entry:
                    if entry["soak"] == "run":
                        run = {"consumer": entry["consumer"], "agent": path,
                               "exit": None, "lines": [], "garbled": 0}
                        runs.append(run)
                    elif entry["soak"] == "exit" and run is not None:
                        run["exit"] = entry["rc"]
                    continue
                if run is not None:
                    run["lines"].append(entry)
    return runs


def audit_agents(runs):
    """Per run: the job it claimed, whether the lease was lost, and whether
    a status was reported written after that."""
    finalized = {}           # job_id -> [(consumer, attempt, status)]
    lease_lost = 0
    written_after_loss = []  # (consumer, job_id)
    requeued = 0
    dead_lettered = 0
    for run in runs:
        attempt = None
        lost = set()
        for e in run["lines"]:
            msg = e.get("msg", "")
            job = e.get("job_id", "")
            if msg == "claimed job" or msg == "build started":
                attempt = e.get("attempt", attempt)
            if msg in ("lease lost; abandoning the job",
                       "job taken over; nothing written",
                       "claimed entry lost before start",
                       "entry lost before dead-lettering") or (
                    msg == "job left for another agent" and
                    "lease lost" in str(e.get("reason", ""))):
                if job not in lost:      # one per job and run
                    lease_lost += 1
                lost.add(job)
            if msg == "job requeued" or msg == "requeueing job":
                requeued += 1
            if msg == "dead-lettered entry":
                dead_lettered += 1
            if msg in ("job finalized", "job cannot run"):
                if job in lost:
                    written_after_loss.append((run["consumer"], job))
                if msg == "job finalized":
                    finalized.setdefault(job, []).append(
                        (run["consumer"], str(attempt), e.get("status")))
    return {"finalized": finalized, "lease_lost": lease_lost,
            "written_after_loss": written_after_loss, "requeued": requeued,
            "dead_lettered": dead_lettered}


def freeze_phase(run):
    """How a frozen run ended: what it logged about its job after thawing."""
    for e in run["lines"]:
        msg = e.get("msg", "")
        if msg in ("lease lost; abandoning the job",
                   "job taken over; nothing written"):
            return "lease lost"
    if run["exit"] is None:
        return "killed"
    return "kept its job" if any(e.get("msg") == "claimed job"
                                 for e in run["lines"]) else "idle"


def kill_phase(run):
    """What the killed run was doing: idle (no job), fetch, build."""
    phase = "idle"
    for e in run["lines"]:
        msg = e.get("msg", "")
        if msg == "claimed job":
            phase = "fetch"
        elif msg in ("entrypoint: building", "build started"):
            phase = "build"
        elif msg in ("job finalized", "job requeued", "job ended during intake",
                     "job taken over; nothing written"):
            phase = "finishing"
    return phase


# --- check -------------------------------------------------------------------

def cmd_check(args):
    d = args.dir
    rows = load_plan(d)
    r = Redis(args.port)
    violations = []

    def violation(text):
        violations.append(text)

    wellformed = [row for row in rows if row["expected"] != "dead"]
    malformed = [row for row in rows if row["expected"] == "dead"]

    # 1. Status of every well-formed job: terminal and as expected.
    hashes = r.pipeline([("HGETALL", row["status_key"]) for row in wellformed])
    status_of = {}
    attempts = []
    for row, flat in zip(wellformed, hashes):
        h = as_dict(flat)
        status_of[row["job_id"]] = h
        if h.get("status") != row["expected"]:
            violation("%s (%s): status %r, expected %r (reason: %s)" % (
                row["job_id"], row["kind"], h.get("status"), row["expected"],
                h.get("reason", "")))
        attempts.append(int(h.get("attempt", "0") or 0))
        if row["kind"] == "fail" and h.get("status") == "failed" and \
                h.get("tests_failed") != "1":
            violation("%s: tests_failed %r, expected 1" % (
                row["job_id"], h.get("tests_failed")))
        if row["kind"] == "unfetchable" and h.get("status") == "error" and \
                not h.get("reason", "").startswith("fetch:"):
            violation("%s: reason %r, expected a fetch error" % (
                row["job_id"], h.get("reason")))
        if row["kind"] == "pass" and h.get("status") == "success" and \
                h.get("tests_passed") != "6":
            violation("%s: tests_passed %r, expected 6" % (
                row["job_id"], h.get("tests_passed")))

    # 2. Dead letters: each malformed entry once, with a reason; nothing else.
    dead = r.call("XRANGE", DEAD, "-", "+") or []
    dead_by_source = {}
    for _, flat in dead:
        f = as_dict(flat)
        dead_by_source.setdefault(f.get("dead_source_id"), []).append(f)
    reasons = {}
    for row in malformed:
        letters = dead_by_source.get(row["entry_id"], [])
        if len(letters) != 1:
            violation("%s (%s): %d dead letters, expected 1" % (
                row["job_id"], row["kind"], len(letters)))
            continue
        reason = letters[0].get("dead_reason", "")
        if row["kind"] == "poison":
            letter = letters[0]
            if not reason.startswith("oversized entry:") or \
                    letter.get("dead_truncated") != "1" or \
                    int(letter.get("dead_entry_bytes", "0")) <= row["doc_bytes"] or \
                    len(letter.get("job", "")) > 1024:
                violation("%s: dead letter %r" % (row["job_id"], {
                    k: v[:120] for k, v in letter.items()}))
        elif not reason.startswith("malformed"):
            violation("%s: dead_reason %r" % (row["job_id"], reason))
        reasons[row["kind"]] = reason
        if row["status_key"]:
            h = as_dict(r.call("HGETALL", row["status_key"]))
            if h.get("status") != "error":
                violation("%s: status %r, expected error" % (
                    row["job_id"], h.get("status")))
    wellformed_ids = {row["entry_id"] for row in wellformed}
    for source in dead_by_source:
        if source in wellformed_ids:
            violation("well-formed entry %s was dead-lettered: %s" % (
                source, dead_by_source[source][0].get("dead_reason")))

    # 3. The group: nothing pending, nothing unread.
    pending = r.call("XPENDING", STREAM, GROUP)[0]
    g = group_info(r)
    xlen = r.call("XLEN", STREAM)
    if pending != 0:
        violation("pending list not empty: %d entries" % pending)
    if unread(r):
        violation("the group has not read every entry (last delivered %s)" %
                  g.get("last-delivered-id"))
    if xlen != len(rows):
        violation("stream holds %d entries, %d were enqueued" % (xlen, len(rows)))
    consumers = r.call("XINFO", "CONSUMERS", STREAM, GROUP) or []

    # 4. Every write, from the MONITOR transcripts.
    mon = audit_monitor(d, rows)
    duplicates = 0
    unowned = 0
    for row in rows:
        writes = mon["terminal_writes"].get(row["status_key"], []) \
            if row["status_key"] else []
        if row["status_key"] and len(writes) != 1:
            violation("%s: %d terminal status writes, expected exactly 1: %s" % (
                row["job_id"], len(writes), writes))
            duplicates += max(0, len(writes) - 1)
        for status, consumer, delivery, ok, owner in writes:
            if not ok:
                unowned += 1
                violation("%s: status %s written by %s (delivery %s) while the "
                          "job's latest claim was %s" % (
                              row["job_id"], status, consumer, delivery, owner))
        if writes and row["expected"] != "dead":
            h = status_of[row["job_id"]]
            status, consumer, delivery = writes[-1][:3]
            if (h.get("consumer"), h.get("attempt")) != (consumer, delivery):
                violation("%s: hash says consumer %s attempt %s, the final write "
                          "came from %s delivery %s" % (
                              row["job_id"], h.get("consumer"), h.get("attempt"),
                              consumer, delivery))
        n = mon["acks"].get(row["entry_id"], 0)
        if n != 1:
            violation("%s: entry %s acknowledged %d times" % (
                row["job_id"], row["entry_id"], n))
            if n > 1:
                duplicates += n - 1

    # 5. The agents' own account.
    runs = agent_runs(d)
    ag = audit_agents(runs)
    for consumer, job in ag["written_after_loss"]:
        violation("%s reported a status write for %s after losing it" % (consumer, job))
    for job, entries in ag["finalized"].items():
        if len(entries) > 1:
            violation("%s finalized %d times: %s" % (job, len(entries), entries))
        h = status_of.get(job)
        if h is None:
            continue
        consumer, attempt, status = entries[-1]
        if (consumer, attempt, status) != (h.get("consumer"), h.get("attempt"),
                                           h.get("status")):
            violation("%s: %s logged 'job finalized' %s at attempt %s, the hash "
                      "says %s by %s attempt %s" % (
                          job, consumer, status, attempt, h.get("status"),
                          h.get("consumer"), h.get("attempt")))
    unlogged = sum(1 for row in wellformed if row["kind"] != "unfetchable" and
                   row["job_id"] not in ag["finalized"])

    # 6. Kills and restarts, from the soak's records.
    kills = []
    if os.path.exists(os.path.join(d, "kills.tsv")):
        with open(os.path.join(d, "kills.tsv")) as f:
            kills = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    by_consumer = {run["consumer"]: run for run in runs}
    phases = {}
    for kill in kills:
        run = by_consumer.get(kill[1])
        phase = kill_phase(run) if run else "unknown"
        phases[phase] = phases.get(phase, 0) + 1
    freezes = []
    if os.path.exists(os.path.join(d, "freezes.tsv")):
        with open(os.path.join(d, "freezes.tsv")) as f:
            freezes = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    freeze_phases = {}
    for freeze in freezes:
        run = by_consumer.get(freeze[1])
        phase = freeze_phase(run) if run else "unknown"
        freeze_phases[phase] = freeze_phases.get(phase, 0) + 1
    restarts = 0
    if os.path.exists(os.path.join(d, "restarts.tsv")):
        with open(os.path.join(d, "restarts.tsv")) as f:
            restarts = sum(1 for line in f if line.strip())
    exits = {}
    for run in runs:
        key = "killed" if run["exit"] is None else str(run["exit"])
        exits[key] = exits.get(key, 0) + 1

    if os.path.exists(os.path.join(d, "pwned")):
        violation("a job's branch ran a shell command: %s exists" %
                  os.path.join(d, "pwned"))

    deliveries = sum(attempts)
    redelivered_jobs = sum(1 for a in attempts if a > 1)
    outcome = {}
    for row in wellformed:
        s = status_of[row["job_id"]].get("status")
        outcome[s] = outcome.get(s, 0) + 1
    kinds = {}
    for row in rows:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1

    print("soak figures")
    print("  jobs enqueued            %d (%s)" % (len(rows), ", ".join(
        "%s %d" % kv for kv in sorted(kinds.items()))))
    print("  well-formed              %d: %s" % (len(wellformed), ", ".join(
        "%s %d" % (k, v) for k, v in sorted(outcome.items(), key=str))))
    print("  malformed                %d: dead letters %d (stream %d entries)" % (
        len(malformed), sum(1 for row in malformed
                            if len(dead_by_source.get(row["entry_id"], [])) == 1),
        len(dead)))
    for kind, reason in sorted(reasons.items()):
        print("    %-13s %s" % (kind, reason[:110]))
    print("  agent runs               %d (%s) by %d agents; consumers in group %d" % (
        len(runs), ", ".join("exit %s: %d" % kv for kv in sorted(exits.items())),
        args.agents, len(consumers)))
    print("  kills                    %d of %d requested (%s)" % (
        len(kills), args.kills_requested,
        ", ".join("%s %d" % kv for kv in sorted(phases.items())) or "none"))
    print("  freezes                  %d of %d requested (%s)" % (
        len(freezes), args.freezes_requested,
        ", ".join("%s %d" % kv for kv in sorted(freeze_phases.items())) or "none"))
    print("  redis restarts           %d" % restarts)
    print("  deliveries               %d for %d well-formed jobs: %d redeliveries, "
          "%d jobs delivered more than once, max %d" % (
              deliveries, len(wellformed), deliveries - len(wellformed),
              redelivered_jobs, max(attempts or [0])))
    print("  claims / requeues        %d claims started, %d requeues (MONITOR)" % (
        mon["claims"], mon["requeues"]))
    print("  lease lost (agent logs)  %d, status written after a loss: %d" % (
        ag["lease_lost"], len(ag["written_after_loss"])))
    print("  finalize not logged      %d (agent killed between its write and its log line)" % unlogged)
    print("  terminal writes          %d for %d status keys (MONITOR, %d transcripts)" % (
        sum(len(w) for w in mon["terminal_writes"].values()),
        sum(1 for row in rows if row["status_key"]), mon["files"]))
    print("  pending                  %d; unread %d; stream %d entries (group lag %s)" % (
        pending, unread(r), xlen, g.get("lag")))
    print("  lost                     %d" % sum(
        1 for row in wellformed
        if status_of[row["job_id"]].get("status") not in TERMINAL))
    print("  duplicates               %d" % duplicates)
    print("  writes by a non-owner    %d" % unowned)
    with open(os.path.join(d, "figures.json"), "w") as f:
        json.dump({"jobs": len(rows), "wellformed": len(wellformed),
                   "malformed": len(malformed), "kills": len(kills), "freezes": len(freezes),
                   "freeze_phases": freeze_phases,
                   "kill_phases": phases, "restarts": restarts,
                   "deliveries": deliveries,
                   "redeliveries": deliveries - len(wellformed),
                   "lease_lost": ag["lease_lost"], "duplicates": duplicates,
                   "unowned": unowned, "runs": len(runs),
                   "violations": violations}, f, indent=1)
    if violations:
        print("VIOLATIONS (%d):" % len(violations))
        for v in violations[:50]:
            print("  - " + v)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    monitor = sub.add_parser("monitor")
    where = monitor.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int)
    where.add_argument("--socket")
    monitor.add_argument("--out", required=True)
    poison = sub.add_parser("poison")
    poison.add_argument("--port", type=int, required=True)
    poison.add_argument("--bytes", type=int, required=True)
    poison.add_argument("--job-id", default="poison")
    for name in ("enqueue", "progress", "check"):
        s = sub.add_parser(name)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--dir", required=True)
        if name == "enqueue":
            s.add_argument("--jobs", type=int, required=True)
            s.add_argument("--seed", type=int, default=1)
            s.add_argument("--steps", default="test")
            s.add_argument("--pass-repo", required=True)
            s.add_argument("--pass-commits", required=True)
            s.add_argument("--fail-repo", required=True)
            s.add_argument("--fail-commit", required=True)
            s.add_argument("--poison-pill", type=int, default=0, metavar="BYTES",
                           help="add one entry of BYTES (e.g. 300000000)")
        if name == "check":
            s.add_argument("--agents", type=int, default=0)
            s.add_argument("--kills-requested", type=int, default=0)
            s.add_argument("--freezes-requested", type=int, default=0)
    args = p.parse_args()
    return {"enqueue": cmd_enqueue, "progress": cmd_progress,
            "check": cmd_check, "poison": cmd_poison,
            "monitor": cmd_monitor}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
