#!/usr/bin/python3
"""Helper of scripts/soak-failover.sh: the Sentinel group's waits, the
producer, the progress probe and the checker.

  failover.py ready    --sentinels P1,P2,P3 [--replicas 2] [--timeout 60]
  failover.py master   --sentinels ...
  failover.py create-group --sentinels ...
  failover.py new-master --sentinels ... --old PORT [--timeout 30]
  failover.py produce  --sentinels ... --dir D --jobs N --seed S
                       --ci-queue PATH --pass-repo URL --pass-commits C1,C2
                       --fail-repo URL --fail-commit C [--backlog 4]
                       [--kills K] [--kill-when busy|idle]
  failover.py progress --sentinels ... --dir D
  failover.py check    --sentinels ... --dir D --servers P1,P2,P3

Passwords: the data servers' from the file $SOAK_REDIS_PASSWORD_FILE, the
sentinels' from $SOAK_SENTINEL_PASSWORD_FILE (both optional).

`ready` returns once every sentinel knows the other two and names the same
master, which says ROLE master and has --replicas replicas online, each
known to the sentinels as a replica in sync (as tests/testing/
redis_sentinel.cc waits); it prints the master's port. `new-master` waits
until the sentinels name a master other than --old that says ROLE master.

`produce` is the producer: it enqueues the jobs one by one with
`ci-queue enqueue` (the producer API, whose WAIT is the one under test)
through the sentinel URL, keeping at most --backlog enqueued jobs that no
agent has claimed yet (read from the agents' logs), so that enqueues go on
through the whole run and through every failover. Job i waits until
i/(kills+1) of the jobs are allowed by the kills asked for so far (lines of
D/kills-asked; with --kill-when idle, the kills made, lines of D/kills.tsv):
every kill has jobs before and after it. An enqueue that fails is
retried, unless the master named now already knows the job. One JSON line
per job in D/enqueues.jsonl: when, attempts, errors and whether WAIT
confirmed it (no "redis write not confirmed by replicas" line). D/plan.json
holds the outcome each job must reach; D/producer.done marks the end.

`progress` prints `<terminal> <enqueued> <pending> <unread 0|1> <missing>
<producer done 0|1>`. `check` reads the servers, the agents' JSON-lines logs
(D/agents/agent*.log, with the soak's run markers), the sentinels' logs
(D/sentinel*/sentinel.log) and the soak's records (D/kills.tsv), prints the
figures, writes D/figures.json and exits 1 when a goal is violated.
"""

import argparse
import calendar
import datetime
import glob
import json
import os
import random
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from soak import (Redis, as_dict, agent_runs, group_info, unread,  # noqa: E402
                  STREAM, GROUP, TERMINAL, status_key)

MASTER = "mymaster"
UNCONFIRMED = "redis write not confirmed by replicas"
# A claim later than this after the failover is clearly broken.
CLAIM_BROKEN_S = 10.0


def secret(name):
    path = os.environ.get(name, "")
    if not path:
        return ""
    with open(path) as f:
        return f.read().strip()


def connect(port, password="", timeout=5):
    r = Redis(port, timeout=timeout)
    if password:
        r.call("AUTH", password)
    return r


def ports(text):
    return [int(p) for p in text.split(",") if p]


def ask_sentinels(sentinels, *command):
    """The first answer of a sentinel, in turn; None when none answers."""
    for port in sentinels:
        try:
            r = connect(port, secret("SOAK_SENTINEL_PASSWORD_FILE"), timeout=1)
            try:
                return r.call(*command)
            finally:
                r.sock.close()
        except (OSError, RuntimeError, ConnectionError):
            continue
    return None


def master_port(sentinels):
    reply = ask_sentinels(sentinels, "SENTINEL", "get-master-addr-by-name", MASTER)
    return int(reply[1]) if reply and len(reply) == 2 else None


def role(port):
    try:
        r = connect(port, secret("SOAK_REDIS_PASSWORD_FILE"), timeout=1)
        try:
            return r.call("ROLE")[0]
        finally:
            r.sock.close()
    except (OSError, RuntimeError, ConnectionError):
        return None


def master(sentinels, timeout=5):
    """A connection to the master the sentinels name, confirmed by ROLE."""
    port = master_port(sentinels)
    if port is None:
        raise ConnectionError("no sentinel answered")
    r = connect(port, secret("SOAK_REDIS_PASSWORD_FILE"), timeout=timeout)
    if r.call("ROLE")[0] != "master":
        r.sock.close()
        raise ConnectionError("%d is not a master (failover under way)" % port)
    return r


def cmd_ready(args):
    sentinels = ports(args.sentinels)
    deadline = time.time() + args.timeout
    missing = "nothing asked yet"
    while time.time() < deadline:
        missing = ""
        masters = set()
        for port in sentinels:
            try:
                r = connect(port, secret("SOAK_SENTINEL_PASSWORD_FILE"), timeout=1)
                others = r.call("SENTINEL", "sentinels", MASTER) or []
                replicas = r.call("SENTINEL", "replicas", MASTER) or []
                addr = r.call("SENTINEL", "get-master-addr-by-name", MASTER)
                r.sock.close()
            except (OSError, RuntimeError, ConnectionError) as e:
                missing += " sentinel %d: %s;" % (port, e)
                continue
            masters.add(int(addr[1]))
            in_sync = sum(1 for rep in replicas
                          if as_dict(rep).get("flags") == "slave" and
                          as_dict(rep).get("master-link-status") == "ok")
            if len(others) != len(sentinels) - 1 or in_sync != args.replicas:
                missing += " sentinel %d: %d other sentinels, %d replicas in sync;" % (
                    port, len(others), in_sync)
        if not missing and len(masters) == 1:
            port = masters.pop()
            try:
                r = connect(port, secret("SOAK_REDIS_PASSWORD_FILE"), timeout=1)
                info = r.call("INFO", "replication")
                r.sock.close()
            except (OSError, RuntimeError, ConnectionError) as e:
                info = ""
                missing = " master %d: %s" % (port, e)
            online = len(re.findall(r"^slave\d+:.*state=online", info or "", re.M))
            if "role:master" in (info or "") and online >= args.replicas:
                print(port)
                return 0
            missing = missing or " master %d: %d replicas online" % (port, online)
        elif not missing:
            missing = " the sentinels name different masters: %s" % sorted(masters)
        time.sleep(0.1)
    print("failover.py: sentinel group not ready:%s" % missing, file=sys.stderr)
    return 1


def cmd_master(args):
    port = master_port(ports(args.sentinels))
    if port is None:
        return 1
    print(port)
    return 0


def cmd_create_group(args):
    r = master(ports(args.sentinels))
    try:
        r.call("XGROUP", "CREATE", STREAM, GROUP, "0", "MKSTREAM")
    except RuntimeError as e:
        if "BUSYGROUP" not in str(e):
            raise
    # On the replicas too before the agents start.
    r.call("WAIT", "2", "5000")
    return 0


def cmd_new_master(args):
    sentinels = ports(args.sentinels)
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        port = master_port(sentinels)
        if port is not None and port != args.old and role(port) == "master":
            print(port)
            return 0
        time.sleep(0.05)
    print("failover.py: no new master after %d s" % args.timeout, file=sys.stderr)
    return 1


# --- producer ----------------------------------------------------------------

def make_plan(args):
    """Jobs on the passing crate (its two commits) and, about 1 in 10, on
    the failing one, shuffled."""
    rng = random.Random(args.seed)
    failing = max(1, args.jobs // 10)
    kinds = ["pass"] * (args.jobs - failing) + ["fail"] * failing
    rng.shuffle(kinds)
    commits = args.pass_commits.split(",")
    rows = []
    for i, kind in enumerate(kinds, 1):
        job_id = "fo-%04d-%s" % (i, kind)
        if kind == "pass":
            repo, commit, expected = args.pass_repo, commits[i % len(commits)], "success"
        else:
            repo, commit, expected = args.fail_repo, args.fail_commit, "failed"
        rows.append({"job_id": job_id, "kind": kind, "expected": expected,
                     "repo": repo, "commit": commit,
                     "status_key": status_key(job_id)})
    return rows


class LogTail:
    """The job ids of the "claimed job" lines of the agents' logs, read on."""

    def __init__(self, d):
        self.d = d
        self.offsets = {}
        self.claimed = set()

    def update(self):
        for path in glob.glob(os.path.join(self.d, "agents", "agent*.log")):
            with open(path, "rb") as f:
                f.seek(self.offsets.get(path, 0))
                data = f.read()
            end = data.rfind(b"\n") + 1
            self.offsets[path] = self.offsets.get(path, 0) + end
            for raw in data[:end].splitlines():
                if b'"claimed job"' not in raw:
                    continue
                try:
                    self.claimed.add(json.loads(raw).get("job_id"))
                except ValueError:
                    pass
        return self.claimed


def known_to_master(sentinels, key):
    try:
        r = master(sentinels, timeout=2)
        try:
            return r.call("EXISTS", key) == 1
        finally:
            r.sock.close()
    except (OSError, RuntimeError, ConnectionError):
        return None


def enqueue(args, row, env):
    """One job, retried until the master has it. Returns its record."""
    sentinels = ports(args.sentinels)
    record = {"job_id": row["job_id"], "kind": row["kind"], "start": time.time(),
              "attempts": 0, "errors": [], "confirmed": False, "wait_reply": None}
    while True:
        record["attempts"] += 1
        try:
            done = subprocess.run(
                [args.ci_queue, "enqueue", "--repo", row["repo"], "--branch", "main",
                 "--commit", row["commit"], "--job-id", row["job_id"],
                 "--steps", "test", "--timeout", "600"],
                env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=60)
            rc, err = done.returncode, done.stderr
        except subprocess.TimeoutExpired:
            rc, err = -1, "ci-queue enqueue timed out"
        if rc == 0:
            record["confirmed"] = True
            for line in err.splitlines():
                if UNCONFIRMED in line:
                    record["confirmed"] = False
                    try:
                        record["wait_reply"] = json.loads(line).get("confirmed")
                    except ValueError:
                        pass
            break
        record["errors"].append("exit %d: %s" % (rc, err.strip()[-300:]))
        # The write may have happened before the error: ask the master named
        # now (after a failover, the new one) before enqueueing again.
        time.sleep(0.3)
        while True:
            known = known_to_master(sentinels, row["status_key"])
            if known is not None:
                break
            time.sleep(0.2)
        if known:
            record["known_after_error"] = True
            break
    record["end"] = time.time()
    return record


def kills_counted(d, name):
    path = os.path.join(d, name)
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.strip())


def cmd_produce(args):
    d = args.dir
    rows = make_plan(args)
    with open(os.path.join(d, "plan.json"), "w") as f:
        json.dump(rows, f, indent=1)
    env = dict(os.environ)
    env.update({"REDIS_URL": args.redis_url, "CI_REDIS_MIN_REPLICAS": "1",
                "CI_REDIS_WAIT_TIMEOUT": "1s"})
    tail = LogTail(d)
    gate = "kills.tsv" if args.kill_when == "idle" else "kills-asked"
    done_ids = []
    with open(os.path.join(d, "enqueues.jsonl"), "a") as out:
        for i, row in enumerate(rows, 1):
            while not os.path.exists(os.path.join(d, "stop")):
                claimed = tail.update()
                # Job i waits for the kills planned before it.
                if sum(1 for j in done_ids if j not in claimed) < args.backlog and \
                        i * (args.kills + 1) <= (kills_counted(d, gate) + 1) * args.jobs:
                    break
                time.sleep(0.2)
            if os.path.exists(os.path.join(d, "stop")):
                break
            record = enqueue(args, row, env)
            out.write(json.dumps(record) + "\n")
            out.flush()
            done_ids.append(row["job_id"])
    open(os.path.join(d, "producer.done"), "w").close()
    return 0


# --- progress ----------------------------------------------------------------

def load_enqueues(d):
    path = os.path.join(d, "enqueues.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cmd_progress(args):
    d = args.dir
    enq = load_enqueues(d)
    r = master(ports(args.sentinels))
    statuses = r.pipeline([("HGET", status_key(e["job_id"]), "status") for e in enq]) \
        if enq else []
    terminal = sum(1 for s in statuses if s in TERMINAL)
    missing = sum(1 for s in statuses if s is None)
    try:
        pending = r.call("XPENDING", STREAM, GROUP)[0]
        not_read = unread(r)
    except RuntimeError:
        pending, not_read = 0, 0   # no stream yet
    print(terminal, len(enq), pending, not_read, missing,
          int(os.path.exists(os.path.join(d, "producer.done"))))
    return 0


# --- check -------------------------------------------------------------------

def parse_ts(text):
    """Epoch seconds of the agents' ISO-8601 UTC timestamps."""
    dt = datetime.datetime.strptime(text.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
    return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6


SENTINEL_LINE = re.compile(
    r"^\d+:X (\d+ \w+ \d+ \d+:\d+:\d+\.\d+) [#*.-] \+switch-master %s "
    r"\S+ (\d+) \S+ (\d+)" % MASTER)


def switch_masters(d):
    """(epoch, sentinel, old port, new port) of each +switch-master line.
    Redis logs local time, as time.mktime reads it."""
    out = []
    for path in sorted(glob.glob(os.path.join(d, "sentinel*", "sentinel.log"))):
        with open(path, errors="replace") as f:
            for line in f:
                m = SENTINEL_LINE.match(line)
                if not m:
                    continue
                when, frac = m.group(1).rsplit(".", 1)
                t = time.mktime(time.strptime(when, "%d %b %Y %H:%M:%S")) + \
                    int(frac) / 1000.0
                out.append((t, os.path.basename(os.path.dirname(path)),
                            int(m.group(2)), int(m.group(3))))
    return sorted(out)


def run_events(run):
    """The run's log lines that matter here, with their epoch times."""
    events = []
    for e in run["lines"]:
        if "ts" not in e:
            continue
        try:
            t = parse_ts(e["ts"])
        except ValueError:
            continue
        events.append((t, e))
    return events


REDIS_WORDS = ("redis", "sentinel", "READONLY", "NOREPLICAS", "MASTERDOWN",
               "LOADING", "UNBLOCKED", "connection refused", "Connection refused")


def cmd_check(args):
    d = args.dir
    sentinels = ports(args.sentinels)
    plan = {row["job_id"]: row for row in json.load(open(os.path.join(d, "plan.json")))}
    enq = load_enqueues(d)
    violations = []
    r = master(sentinels)
    master_now = master_port(sentinels)

    # Replication settles before the servers are compared.
    try:
        r.call("WAIT", str(len(ports(args.servers)) - 1), "5000")
    except RuntimeError:
        pass

    # 1. Each enqueued job at the end, on the master and on every server.
    keys = [status_key(e["job_id"]) for e in enq]
    hashes = [as_dict(h) for h in r.pipeline([("HGETALL", k) for k in keys])] if keys else []
    final = {e["job_id"]: h for e, h in zip(enq, hashes)}
    lost_confirmed, lost_unconfirmed, wrong = [], [], []
    for e in enq:
        h = final[e["job_id"]]
        status = h.get("status")
        if status not in TERMINAL:
            (lost_confirmed if e["confirmed"] else lost_unconfirmed).append(
                "%s (status %s)" % (e["job_id"], status))
        elif status != plan[e["job_id"]]["expected"]:
            wrong.append("%s: %s, expected %s (%s)" % (
                e["job_id"], status, plan[e["job_id"]]["expected"], h.get("reason", "")))
    for item in lost_confirmed:
        violations.append("lost although WAIT confirmed its enqueue: " + item)
    for item in wrong:
        violations.append("wrong outcome: " + item)
    disagree = []
    for port in ports(args.servers):
        if port == master_now:
            continue
        try:
            rr = connect(port, secret("SOAK_REDIS_PASSWORD_FILE"))
            others = rr.pipeline([("HGET", k, "status") for k in keys]) if keys else []
            rr.sock.close()
        except (OSError, RuntimeError, ConnectionError) as ex:
            disagree.append("server %d unreadable: %s" % (port, ex))
            continue
        for e, s in zip(enq, others):
            if s != final[e["job_id"]].get("status"):
                disagree.append("%s: %s on the master %d, %s on %d" % (
                    e["job_id"], final[e["job_id"]].get("status"), master_now, s, port))
    for item in disagree:
        violations.append("servers disagree: " + item)

    # 2. Claims, finalizes and exits, from the agents' logs.
    runs = agent_runs(d)
    claims = {}        # job -> [(t, consumer, attempt, stream_id, run)]
    finals = {}        # job -> [(t, consumer, attempt, status, msg, run)]
    unconfirmed = {}   # write kind -> count
    unconfirmed_finalize = set()   # (consumer, job)
    all_claim_times = []
    for run in runs:
        attempt = {}
        for t, e in run_events(run):
            msg = e.get("msg", "")
            job = e.get("job_id", "")
            if msg == "claimed job":
                claims.setdefault(job, []).append(
                    (t, run["consumer"], str(e.get("attempt")), e.get("stream_id"), run))
                attempt[job] = str(e.get("attempt"))
                all_claim_times.append((t, run["consumer"]))
            elif msg in ("job finalized", "job cannot run"):
                finals.setdefault(job, []).append(
                    (t, run["consumer"], attempt.get(job), e.get("status", "error"), msg, run))
            elif msg == UNCONFIRMED:
                write = str(e.get("write", ""))
                kind = write.split(" ")[0] or "?"
                unconfirmed[kind] = unconfirmed.get(kind, 0) + 1
                if write.startswith("finalize job "):
                    unconfirmed_finalize.add((run["consumer"], write[len("finalize job "):]))

    # 3. Failovers: kill, the sentinels' announcement, the next claim.
    kills = []
    if os.path.exists(os.path.join(d, "kills.tsv")):
        with open(os.path.join(d, "kills.tsv")) as f:
            for line in f:
                if line.strip():
                    t, port, by = line.rstrip("\n").split("\t")
                    kills.append((float(t), int(port), by))
    switches = switch_masters(d)
    failovers = []
    windows = []
    for t, port, by in kills:
        sw = [s for s in switches if s[2] == port and s[0] >= t - 1]
        sw_t = sw[0][0] if sw else None
        after = sorted(c for c in all_claim_times if c[0] > t)
        claim_t = after[0][0] if after else None
        failovers.append({
            "killed_at": t, "old_master": port, "killed_by_loop_of": by,
            "new_master": sw[0][3] if sw else None,
            "switch_master_s": round(sw_t - t, 3) if sw_t else None,
            "claim_after_kill_s": round(claim_t - t, 3) if claim_t else None,
            "claim_after_switch_s": round(claim_t - sw_t, 3) if claim_t and sw_t else None,
            "next_claim_by": after[0][1] if after else None})
        windows.append((t - 2.0, (sw_t or t + 30) + 2.0))
        f = failovers[-1]
        claimed_before = {j for j, cl in claims.items() if any(c[0] <= t for c in cl)}
        if sw_t is None:
            violations.append("failover of %d: no +switch-master" % port)
        elif claim_t is None:
            if len(claimed_before) < len(enq):
                violations.append("failover of %d: no claim after it" % port)
        elif f["claim_after_switch_s"] > CLAIM_BROKEN_S:
            violations.append("failover of %d: first claim %.1f s after +switch-master" % (
                port, f["claim_after_switch_s"]))

    def in_window(t):
        return any(a <= t <= b for a, b in windows)

    # 4. Jobs claimed more than once, and why.
    twice = []
    for job, cl in sorted(claims.items()):
        cl.sort(key=lambda c: c[0])
        for prev, nxt in zip(cl, cl[1:]):
            run = prev[4]
            lines = [e for t, e in run_events(run) if e.get("job_id") == job]
            msgs = [e.get("msg", "") for e in lines]
            fin = [f for f in finals.get(job, []) if f[5] is run]
            if prev[3] != nxt[3]:
                why = "enqueued twice (stream entries %s, %s)" % (prev[3], nxt[3])
            elif fin:
                confirmed = (run["consumer"], job) not in unconfirmed_finalize
                why = "finalize lost in the failover window" if in_window(fin[0][0]) \
                    else "re-claimed after a finalize outside any failover"
                why += " (WAIT %s)" % ("confirmed" if confirmed else "not confirmed")
                if confirmed:
                    violations.append("%s: finalized by %s (WAIT confirmed), then claimed "
                                      "again by %s" % (job, prev[1], nxt[1]))
            elif prev[2] == nxt[2]:
                why = "claim lost in the failover window (both attempt %s)" % prev[2]
            elif any(m in ("lease lost; abandoning the job", "job taken over; nothing written")
                     for m in msgs) or any("lease lost" in str(e.get("reason", ""))
                                           for e in lines):
                why = "lease expired (renewals failed)"
            elif any(m in ("job requeued", "requeueing job") for m in msgs):
                why = "requeued by the agent"
            elif run["exit"] is None:
                why = "agent run killed"
            else:
                why = "lease expired (the run ended with exit %s)" % run["exit"]
            twice.append({"job_id": job, "first": prev[1], "attempt": prev[2],
                          "again": nxt[1], "again_attempt": nxt[2],
                          "claimed_at": round(prev[0], 3), "again_at": round(nxt[0], 3),
                          "why": why})

    # 5. Terminal statuses: each logged one must be the hash's, or have been
    # lost (the job claimed again after it); two that stood is a violation.
    multi_terminal = []
    for job, fl in sorted(finals.items()):
        later_claims = [c[0] for c in claims.get(job, [])]
        stood = [f for f in fl if not any(c > f[0] for c in later_claims)]
        if len(stood) > 1:
            multi_terminal.append("%s: %s" % (job, [(f[1], f[2], f[3]) for f in stood]))
        h = final.get(job, {})
        if stood and (stood[-1][1], stood[-1][2], stood[-1][3]) != (
                h.get("consumer"), h.get("attempt"), h.get("status")):
            violations.append("%s: last finalize logged by %s attempt %s (%s), the hash "
                              "says %s attempt %s (%s)" % (
                                  job, stood[-1][1], stood[-1][2], stood[-1][3],
                                  h.get("consumer"), h.get("attempt"), h.get("status")))
    for item in multi_terminal:
        violations.append("more than one terminal status: " + item)

    # 6. Agent runs that ended in error, and those caused by Redis.
    exits = {}
    restarts = []
    for run in runs:
        key = "killed" if run["exit"] is None else str(run["exit"])
        exits[key] = exits.get(key, 0) + 1
        if run["exit"] in (None, 0):
            continue
        text = " ".join(json.dumps(e) for e in run["lines"]
                        if e.get("level") in ("warning", "error") or
                        e.get("msg") == "entrypoint: done")
        cause = "redis" if any(w in text for w in REDIS_WORDS) else "other"
        last = [e for e in run["lines"] if e.get("level") in ("warning", "error")]
        restarts.append({"consumer": run["consumer"], "exit": run["exit"], "cause": cause,
                         "last_error": (last[-1].get("msg", "") + ": " +
                                        str(last[-1].get("error", last[-1].get("reason", ""))))[:300]
                         if last else ""})
    for item in restarts:
        violations.append("agent run %s exited %s (%s): %s" % (
            item["consumer"], item["exit"], item["cause"], item["last_error"]))

    pending = r.call("XPENDING", STREAM, GROUP)[0]
    not_read = unread(r)
    xlen = r.call("XLEN", STREAM)
    if pending or not_read:
        violations.append("queue not drained: %d pending, unread %d" % (pending, not_read))

    confirmed = sum(1 for e in enq if e["confirmed"])
    retried = sum(1 for e in enq if e["attempts"] > 1)
    outcome = {}
    for h in final.values():
        outcome[h.get("status")] = outcome.get(h.get("status"), 0) + 1

    print("failover soak figures")
    print("  jobs enqueued            %d of %d planned; WAIT confirmed %d, not confirmed %d; "
          "%d retried after an error; stream %d entries" % (
              len(enq), len(plan), confirmed, len(enq) - confirmed, retried, xlen))
    for e in enq:
        if not e["confirmed"] or e["attempts"] > 1:
            print("    %s: %s, %d attempt(s)%s" % (
                e["job_id"], "confirmed" if e["confirmed"] else
                "not confirmed (WAIT replied %s)" % e.get("wait_reply"),
                e["attempts"], "; known to the new master after the error"
                if e.get("known_after_error") else ""))
    print("  outcomes                 %s" % ", ".join(
        "%s %d" % (k, v) for k, v in sorted(outcome.items(), key=str)))
    print("  jobs lost                %d among WAIT-confirmed enqueues, %d among the others" % (
        len(lost_confirmed), len(lost_unconfirmed)))
    for item in lost_confirmed + lost_unconfirmed:
        print("    " + item)
    print("  jobs run twice           %d" % len(twice))
    for t in twice:
        print("    %s: %s (attempt %s), again by %s (attempt %s) %.1f s later: %s" % (
            t["job_id"], t["first"], t["attempt"], t["again"], t["again_attempt"],
            t["again_at"] - t["claimed_at"], t["why"]))
    print("  >1 terminal status       %d; servers disagreeing at the end %d" % (
        len(multi_terminal), len(disagree)))
    for i, f in enumerate(failovers, 1):
        print("  failover %d               master %s killed (by %s's loop), +switch-master "
              "to %s after %s s; next claim %s s after the kill, %s s after "
              "+switch-master (by %s)" % (
                  i, f["old_master"], f["killed_by_loop_of"], f["new_master"],
                  f["switch_master_s"], f["claim_after_kill_s"],
                  f["claim_after_switch_s"], f["next_claim_by"]))
    print("  agent runs               %d (%s); restarted because of Redis %d, other errors %d" % (
        len(runs), ", ".join("exit %s: %d" % kv for kv in sorted(exits.items())),
        sum(1 for x in restarts if x["cause"] == "redis"),
        sum(1 for x in restarts if x["cause"] != "redis")))
    print("  agents' unconfirmed writes %s" % (", ".join(
        "%s %d" % kv for kv in sorted(unconfirmed.items())) or "none"))
    print("  pending                  %d; unread %d" % (pending, not_read))
    figures = {
        "jobs_planned": len(plan), "jobs_enqueued": len(enq),
        "enqueues_confirmed": confirmed, "enqueues_unconfirmed": len(enq) - confirmed,
        "enqueues_retried": retried,
        "unconfirmed_enqueues": [e["job_id"] for e in enq if not e["confirmed"]],
        "outcomes": {str(k): v for k, v in outcome.items()},
        "lost_confirmed": lost_confirmed, "lost_unconfirmed": lost_unconfirmed,
        "run_twice": twice, "multiple_terminal": multi_terminal,
        "servers_disagree": disagree, "failovers": failovers,
        "agent_runs": len(runs), "exits": exits, "restarts": restarts,
        "restarts_redis": sum(1 for x in restarts if x["cause"] == "redis"),
        "agent_unconfirmed_writes": unconfirmed, "pending": pending,
        "violations": violations}
    with open(os.path.join(d, "figures.json"), "w") as f:
        json.dump(figures, f, indent=1)
    if violations:
        print("VIOLATIONS (%d):" % len(violations))
        for v in violations[:50]:
            print("  - " + v)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("ready", "master", "create-group", "new-master", "produce",
                 "progress", "check"):
        s = sub.add_parser(name)
        s.add_argument("--sentinels", required=True)
        if name == "ready":
            s.add_argument("--replicas", type=int, default=2)
            s.add_argument("--timeout", type=int, default=60)
        if name == "new-master":
            s.add_argument("--old", type=int, required=True)
            s.add_argument("--timeout", type=int, default=30)
        if name in ("produce", "progress", "check"):
            s.add_argument("--dir", required=True)
        if name == "produce":
            s.add_argument("--redis-url", required=True)
            s.add_argument("--jobs", type=int, required=True)
            s.add_argument("--seed", type=int, default=1)
            s.add_argument("--backlog", type=int, default=4)
            s.add_argument("--kills", type=int, default=0)
            s.add_argument("--kill-when", choices=("busy", "idle"), default="busy")
            s.add_argument("--ci-queue", required=True)
            s.add_argument("--pass-repo", required=True)
            s.add_argument("--pass-commits", required=True)
            s.add_argument("--fail-repo", required=True)
            s.add_argument("--fail-commit", required=True)
        if name == "check":
            s.add_argument("--servers", required=True)
    args = p.parse_args()
    return {"ready": cmd_ready, "master": cmd_master,
            "create-group": cmd_create_group, "new-master": cmd_new_master,
            "produce": cmd_produce, "progress": cmd_progress,
            "check": cmd_check}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
