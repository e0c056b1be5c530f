#!/usr/bin/python3
"""The repair service: positions degraded writes left missing, and positions on a D-node the
map takes out, are rebuilt onto live D-nodes, so every acknowledged write survives m more
D-node failures again.

6 D-nodes, EC 4+2 (fragments of 256 KiB), 2 C-nodes running a background repair pass every
5 s (`cairn-local up --repair-interval 5`).  Four writers, S3 (boto3) and NFS (`nfscheck
write`) through each C-node, write objects of a few bytes (inline), about 300 KB and 1-3 MiB,
each under a name of its own, and record every acknowledged write (test_degraded_write's
writes).

Phase 1, a D-node returns: after a baseline one D-node (the victim) is killed with SIGKILL
and the writers go on, so writes are acknowledged with k + 1 of k + m fragments (the
victim's position recorded as missing).  With the victim still down `cairnctl repair run`
finds degraded extents and can rebuild none of them (every other D-node holds a fragment of
each already): exit 1, `repair status` degraded_left > 0.  The victim restarted, `repair
run` (retried for at most 120 s; the background service may have done it first) exits 0 and
`repair status` says degraded_left 0, bytes_left 0.  The proof: two other D-nodes are killed
and every acknowledged write reads back byte for byte through both C-nodes over S3 GET and
NFS READ.  Without the rebuild the writes made while the victim was down would have 5 of 6
fragments, 3 with two more D-nodes gone: unreadable.  (With m D-nodes down a read has no
fragment to spare, so on a loaded machine a live D-node that answers late fails it: at most
10 reads that failed with an error, never with other bytes, get one more try, and the log
counts them.)

Phase 2, a D-node replaced by an empty one: the two restarted, another D-node Y is killed and
the writers go on (degraded again); then `cairn-local add` starts a 7th, empty D-node and
`cairnctl map out` takes Y out.  Every fragment Y held and every position missing since must
be rebuilt, and the only D-node that holds no fragment of those extents is the new one.
`repair run` exits 0 within 120 s, `repair status` says degraded_left 0 and more bytes
rebuilt than after phase 1.  The proof: Y stays down, two more of the original D-nodes are
killed (4 of 7 live, k) and every acknowledged write of both phases reads back byte for byte
through both C-nodes over both protocols.

CAIRN_REPAIR_SEED changes the victims and the write mix; CAIRN_REPAIR_SECONDS how long the
writers run with the first victim down (default 12).
"""
import os
import random
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import BotoCoreError, ClientError

from cluster import Cluster, check, clip, log, main, sha256
from test_degraded_write import (B, WRITE_TIMEOUT, History, describe, expected_sha, nfs_write,
                                 pick_size, s3_put, size_class)

K, M = 4, 2
DNODES = K + M
FRAG = 256 * 1024            # a stripe holds 1 MiB of data
INTERVAL = 5                 # --repair-interval: a background pass about every 5 s
BASELINE = 3.0               # seconds of writes before each kill
SECONDS1 = float(os.environ.get("CAIRN_REPAIR_SECONDS", "12"))  # writes with the victim down
SECONDS2 = 10.0              # writes with Y down
MIN_DEGRADED1 = 12           # acknowledged writes started after the first kill, at least
MIN_DEGRADED2 = 6            # ... after Y's kill
PACE = 0.6                   # a writer starts at most one write per PACE seconds: every
                             # acknowledged write is read back 4 times, twice, with D-nodes down
REPAIR_TIMEOUT = 120         # `repair run` reaches exit 0 within this
RUN_TIMEOUT = 200            # one `repair run` returns within this
RECOVER_TIMEOUT = 90         # writes succeed through every C-node again after restarts
DOWN_MS = 10.0               # CL_DOWN_MS: a C-node skips a silent D-node this long
CONVERGE_TIMEOUT = 120       # shard replicas leave the D-node taken out within this
READ_TIMEOUT = 120           # one read while reading back
RETRY_MAX = 10               # reads that failed (with an error, never other bytes) retried

RUN_RE = re.compile(r"repair: shards (\d+), extents (\d+), degraded (\d+), rebuilt (\d+) "
                    r"positions \((\d+) bytes\), left (\d+), failed (\d+)")


def writer(c, proto, node, prefix, stop, hist, rnd):
    """test_degraded_write's writer, with names that are new in every phase."""
    client = c.boto3_client(node=node, read_timeout=WRITE_TIMEOUT) if proto == "S3" else None
    n = 0
    while not stop.is_set():
        name = "%s-%s%d-%05d" % (prefix, proto.lower(), node, n)
        size = pick_size(rnd)
        if proto == "S3":
            w = s3_put(client, node, name, size, rnd)
        else:
            w = nfs_write(c, node, name, size, rnd.getrandbits(63))
        hist.add(w)
        n += 1
        stop.wait(w["start"] + PACE - time.monotonic())


def read_one(c, clients, w, node, proto, t0, timeout=READ_TIMEOUT):
    """One read of acknowledged write w through C-node node, over S3 GET (clients[node], a
    boto3 client) or NFS READ (nfs-cp), compared with what was acknowledged (or with one of
    the sha256 digests in w["maybe"], if any: contents that writes which failed after it may
    have published).  Returns None, or (wrong bytes?, what happened)."""
    expected_sha(w)
    try:
        if proto == "S3":
            got = clients[node].get_object(Bucket=B, Key=w["name"])["Body"].read()
        else:
            dst = os.path.join(c.dir, "readback-%d" % threading.get_ident())
            p = c.nfs_cp(c.nfs_url("/%s/%s" % (B, w["name"]), node), dst, timeout=timeout,
                         check_rc=False)
            if p.returncode:
                return False, "%s: NFS read via C-node %d failed (%d): %s" % (
                    describe(w, t0), node, p.returncode, clip(p.stdout, 200).strip())
            with open(dst, "rb") as f:
                got = f.read()
    except (ClientError, BotoCoreError) as e:
        return False, "%s: S3 GET via C-node %d failed: %s" % (describe(w, t0), node,
                                                               str(e)[:200])
    except subprocess.TimeoutExpired:
        return False, "%s: NFS read via C-node %d did not finish in %d s" % (
            describe(w, t0), node, timeout)
    if (len(got) != w["size"] or sha256(got) != w["sha"]) and \
            sha256(got) not in w.get("maybe", ()):
        return True, "%s: %s read via C-node %d returns %d bytes%s" % (
            describe(w, t0), proto, node, len(got),
            ", different content" if len(got) == w["size"] else "")
    return None


COMBOS = [(node, proto) for node in (0, 1) for proto in ("S3", "NFS")]


def read_back(c, acked, t0, label, spread=False):
    """Every acknowledged write read through both C-nodes over S3 GET and NFS READ (nfs-cp)
    and compared with what was acknowledged, as test_degraded_write's read_back; with spread,
    each write is read once, the writes taking the four ways in turn.

    With m D-nodes down a read has no fragment to spare, so a live D-node that answers late
    (a loaded machine) fails it.  A few reads that failed with an error get one more try once
    the C-node has stopped skipping the late D-node (CL_DOWN_MS), and are counted in the log;
    other bytes, or many failures, fail at once.  Without the rebuild those reads fail every
    time: k fragments are not there to read."""
    for w in acked:
        expected_sha(w)  # before the threads, which only read it
    clients = [c.boto3_client(node=n, read_timeout=READ_TIMEOUT) for n in (0, 1)]

    def one(job):
        return read_one(c, clients, *job, t0)

    t = time.monotonic()
    if spread:
        jobs = [(w,) + COMBOS[i % len(COMBOS)] for i, w in enumerate(acked)]
    else:
        jobs = [(w, node, proto) for w in acked for node, proto in COMBOS]
    with ThreadPoolExecutor(4) as ex:
        bad = [(job, r) for job, r in zip(jobs, ex.map(one, jobs)) if r]
    wrong = [r[1] for _, r in bad if r[0]]
    check(not wrong, "%s: %d of %d reads of acknowledged writes returned other bytes, e.g.:\n"
          "  %s" % (label, len(wrong), len(jobs), "\n  ".join(wrong[:10])))
    check(len(bad) <= RETRY_MAX, "%s: %d of %d reads of acknowledged writes failed, e.g.:\n"
          "  %s" % (label, len(bad), len(jobs), "\n  ".join(r[1] for _, r in bad[:10])))
    if bad:
        log("     %d reads failed, retrying them in %.0f s:\n       %s" % (
            len(bad), DOWN_MS + 1, "\n       ".join(r[1] for _, r in bad)))
        time.sleep(DOWN_MS + 1)
        again = [(job, one(job)) for job, _ in bad]
        still = [r[1] for _, r in again if r]
        check(not still, "%s: %d of %d reads of acknowledged writes failed, %d of them on a "
              "retry too, e.g.:\n  %s" % (label, len(bad), len(jobs), len(still),
                                         "\n  ".join(still[:10])))
    log("ok   %s: all %d acknowledged writes (%d bytes) read back identical through both "
        "C-nodes over S3 and NFS (%d reads%s, %d of them on a retry; %.1f s)" % (
            label, len(acked), sum(w["size"] for w in acked), len(jobs),
            ", one per write" if spread else "", len(bad), time.monotonic() - t))


def write_around_kill(c, rnd, prefix, victim, after):
    """Writers through both C-nodes over both protocols: BASELINE s, kill -9 D-node victim,
    after s more.  Returns (writes by start, kill time)."""
    hist = History()
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(c, proto, node, prefix, stop, hist,
                                                     random.Random(rnd.getrandbits(64))))
               for proto in ("S3", "NFS") for node in (0, 1)]
    for t in threads:
        t.start()
    try:
        time.sleep(BASELINE)
        t_kill = time.monotonic()
        c.kill_now("dnode", victim)
        log("killed D-node %d (SIGKILL) after %.0f s of writes; writers go on for %.0f s" % (
            victim, BASELINE, after))
        time.sleep(after)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=WRITE_TIMEOUT + 30)
    check(not any(t.is_alive() for t in threads), "a writer did not stop within %d s" %
          (WRITE_TIMEOUT + 30))
    return sorted(hist.writes, key=lambda w: w["start"]), t_kill


def judge_writes(writes, t_kill, victim, min_degraded, label):
    """Checks on one phase's writes; returns the acknowledged ones that started after the kill
    (written with the victim down)."""
    base = [w for w in writes if w["end"] < t_kill]
    after = [w for w in writes if w["start"] >= t_kill]
    degraded = [w for w in after if w["ok"]]
    failed = [w for w in writes if not w["ok"]]
    log("%s: baseline %d writes; D-node %d down: %d writes started, %d acknowledged (%s), "
        "%d failed in all" % (label, len(base), victim, len(after), len(degraded), ", ".join(
            "%s %s %d" % (proto, cls, sum(1 for w in degraded if w["proto"] == proto and
                                          size_class(w["size"]) == cls))
            for proto in ("S3", "NFS") for cls in ("inline", "~300 KB", "1-3 MiB")),
        len(failed)))
    if failed:
        log("     e.g. %s" % describe(failed[0], t_kill))
    check(len(base) >= 4, "%s: only %d writes finished in the %.0f s baseline" % (
        label, len(base), BASELINE))
    bad = [w for w in base if not w["ok"]]
    check(not bad, "%s: with no D-node down %d of %d writes failed, e.g. %s" % (
        label, len(bad), len(base), describe(bad[0], t_kill) if bad else ""))
    check(len(degraded) >= min_degraded, "%s: only %d writes started after D-node %d's kill "
          "were acknowledged, need %d to prove anything; failures e.g.\n  %s" % (
              label, len(degraded), victim, min_degraded,
              "\n  ".join(describe(w, t_kill) for w in failed[:6])))
    for proto in ("S3", "NFS"):
        check(any(w["proto"] == proto and w["size"] > 64 for w in degraded),
              "%s: no %s write with data outside the inode was acknowledged with D-node %d "
              "down" % (label, proto, victim))
    return degraded


def ctl(c, *args, timeout=60):
    try:
        return c.ctl(*args, timeout=timeout)
    except subprocess.TimeoutExpired:
        check(False, "cairnctl %s did not finish in %d s" % (" ".join(args), timeout))


def repair_run(c, timeout=RUN_TIMEOUT):
    """One `cairnctl repair run`: (exit status, figures by name, stdout, stderr)."""
    t = time.monotonic()
    p = ctl(c, "repair", "run", timeout=timeout)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    check(p.returncode in (0, 1), "repair run exited %d:\n%s%s" % (p.returncode, clip(out),
                                                                   clip(err)))
    m = RUN_RE.search(out)
    check(m, "repair run printed no `repair: shards N, extents N, degraded N, rebuilt N "
          "positions (N bytes), left N, failed N` line:\n%s%s" % (clip(out), clip(err)))
    fig = dict(zip(("shards", "extents", "degraded", "rebuilt", "bytes", "left", "failed"),
                   (int(x) for x in m.groups())))
    fig["seconds"] = time.monotonic() - t
    if p.returncode == 0:
        check(fig["left"] == 0, "repair run exited 0 but says: %s" % m.group(0))
    else:
        check(fig["left"] > 0 or fig["failed"] > 0,
              "repair run exited 1 but says: %s\n%s" % (m.group(0), clip(err)))
    return p.returncode, fig, out.strip(), err.strip()


def repair_status(c):
    """`cairnctl repair status` as {name: int}."""
    p = ctl(c, "repair", "status")
    out = p.stdout.decode(errors="replace")
    check(p.returncode == 0, "repair status exited %d:\n%s%s" % (
        p.returncode, clip(out), clip(p.stderr)))
    st = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 2:
            try:
                st[f[0]] = int(f[1])
            except ValueError:
                pass
    for name in ("shards", "shards_passed", "degraded_left", "bytes_left", "bytes_rebuilt",
                 "eta_s"):
        check(name in st, "repair status has no `%s N` line:\n%s" % (name, clip(out)))
    return st


def fmt_status(st):
    return " ".join("%s=%d" % kv for kv in sorted(st.items()))


def repair_until_clean(c, t_from, label):
    """`repair run` until it exits 0 (the background service may get there first), then
    `repair status` must agree.  Returns (runs' figures, status, seconds from t_from)."""
    deadline = time.monotonic() + REPAIR_TIMEOUT
    runs = []
    while True:
        rc, fig, out, err = repair_run(c, timeout=max(30, deadline - time.monotonic() + 30))
        runs.append(fig)
        log("     repair run: exit %d in %.1f s: %s%s" % (
            rc, fig["seconds"], out, (" (%s)" % err.replace("\n", "; ")[:300]) if err else ""))
        if rc == 0:
            break
        check(time.monotonic() < deadline, "%s: `repair run` still exits 1 after %d s (%d "
              "runs); the last said: %s\n%s\nrepair status: %s" % (
                  label, REPAIR_TIMEOUT, len(runs), out, clip(err), fmt_status(repair_status(c))))
        time.sleep(2)
    took = time.monotonic() - t_from
    st = repair_status(c)
    log("     repair status: %s" % fmt_status(st))
    check(st["degraded_left"] == 0 and st["bytes_left"] == 0,
          "%s: `repair run` exited 0 but `repair status` says: %s" % (label, fmt_status(st)))
    check(st["shards_passed"] == st["shards"] and st["shards"] == runs[-1]["shards"],
          "%s: after a full pass `repair status` says: %s (repair run: %d shards)" % (
              label, fmt_status(st), runs[-1]["shards"]))
    return runs, st, took


def kill_dnodes(c, nodes):
    for i in nodes:
        c.kill("dnode", i)
    status = c.local("status").stdout
    for i in nodes:
        check(re.search(r"^dnode %d \S+ stopped" % i, status, re.M),
              "D-node %d should be down:\n%s" % (i, status))


def probe_writes(c, rnd, prefix, t_restart):
    """After restarts: once the C-nodes may have stopped skipping the restarted D-nodes
    (CL_DOWN_MS), writes through both C-nodes over both protocols, until one of each
    succeeds.  Returns the probes."""
    time.sleep(max(0.0, t_restart + DOWN_MS + 1 - time.monotonic()))
    probes, last_err, n = [], {}, 0
    pending = {(proto, node) for proto in ("S3", "NFS") for node in (0, 1)}
    clients = [c.boto3_client(node=i, read_timeout=WRITE_TIMEOUT) for i in (0, 1)]
    while pending and time.monotonic() - t_restart < RECOVER_TIMEOUT:
        for proto, node in sorted(pending):
            name = "%s-%s%d-%d" % (prefix, proto.lower(), node, n)
            size = (1 << 20) + rnd.randrange(1 << 20)
            w = (s3_put(clients[node], node, name, size, rnd) if proto == "S3" else
                 nfs_write(c, node, name, size, rnd.getrandbits(63)))
            probes.append(w)
            if w["ok"]:
                pending.discard((proto, node))
            else:
                last_err[(proto, node)] = w["err"]
        n += 1
        if pending:
            time.sleep(1)
    check(not pending, "%.0f s after the restarts writes still fail: %s" % (
        RECOVER_TIMEOUT, "; ".join("%s via C-node %d: %s" % (p, nd, last_err.get((p, nd)))
                                   for p, nd in sorted(pending))))
    return probes


def map_show(c):
    p = ctl(c, "map", "show", timeout=120)
    check(p.returncode == 0, "map show: %s" % p.stderr.decode(errors="replace"))
    return p.stdout.decode()


def wait_converged(c, skip, timeout=CONVERGE_TIMEOUT):
    """Until no leader reports a group still moving and every D-node but those in skip (down)
    votes in at least the shard groups the map places on it (as test_map_change)."""
    deadline = time.monotonic() + timeout
    while True:
        out = map_show(c)
        ok = True
        for row in (l for l in out.splitlines() if l.startswith("dnode ")):
            if int(row.split()[1]) in skip:
                continue
            m = re.search(r"shards=(\d+) voting=(\d+) moving=(\d+)", row)
            if not m:
                ok = False
                continue
            shards, voting, moving = (int(x) for x in m.groups())
            ok = ok and moving == 0 and voting >= shards + row.endswith("map-group")
        if ok:
            return out
        check(time.monotonic() < deadline, "shard replicas did not move to the new map in "
              "%d s:\n%s" % (timeout, out))
        time.sleep(1)


def test():
    rnd = random.Random(int(os.environ.get("CAIRN_REPAIR_SEED", "23")))
    with Cluster(dnodes=DNODES, ec="%d+%d" % (K, M), cnodes=2, frag_size=FRAG,
                 extra_args=["--repair-interval", str(INTERVAL)]) as c:
        t0 = time.monotonic()
        check(c.env.get("REPAIR_INTERVAL_S") == str(INTERVAL),
              "cluster.env has REPAIR_INTERVAL_S=%s, not %d" % (c.env.get("REPAIR_INTERVAL_S"),
                                                               INTERVAL))
        c.boto3_client().create_bucket(Bucket=B)
        st = repair_status(c)
        log("repair status of the new cluster: %s" % fmt_status(st))
        check(st["degraded_left"] == 0 and st["bytes_left"] == 0,
              "a new cluster has something to repair: %s" % fmt_status(st))

        # ---- Phase 1: a D-node returns ----
        victim = rnd.randrange(DNODES)
        writes1, t_kill1 = write_around_kill(c, rnd, "p1", victim, SECONDS1)
        degraded1 = judge_writes(writes1, t_kill1, victim, MIN_DEGRADED1, "phase 1")
        acked = [w for w in writes1 if w["ok"]]

        # With the victim down every other D-node holds a fragment of each extent already:
        # nowhere to rebuild to (two fragments on one D-node would not restore redundancy).
        rc, fig, out, err = repair_run(c)
        log("     repair run with D-node %d down: exit %d in %.1f s: %s%s" % (
            victim, rc, fig["seconds"], out, (" (%s)" % err.replace("\n", "; ")[:300])
            if err else ""))
        check(rc == 1 and fig["degraded"] > 0 and fig["left"] > 0,
              "with D-node %d still down after %d acknowledged degraded writes, `repair run` "
              "should find degraded extents it cannot repair (exit 1): exit %d, %s\n%s" % (
                  victim, len(degraded1), rc, out, clip(err)))
        check(fig["rebuilt"] == 0, "with D-node %d down and no D-node free of the degraded "
              "extents' fragments, `repair run` rebuilt positions: %s" % (victim, out))
        st = repair_status(c)
        log("     repair status with D-node %d down: %s" % (victim, fmt_status(st)))
        check(st["degraded_left"] > 0 and st["bytes_left"] > 0,
              "with D-node %d down `repair status` says nothing is left: %s" % (
                  victim, fmt_status(st)))
        degraded_found1 = fig["degraded"]

        c.start("dnode", victim)
        t_restart = time.monotonic()
        log("restarted D-node %d" % victim)
        runs1, st1, took1 = repair_until_clean(c, t_restart, "phase 1")
        check(st1["bytes_rebuilt"] > 0, "phase 1: %d degraded extents repaired but "
              "`repair status` says bytes_rebuilt 0" % degraded_found1)
        log("ok   phase 1: %d degraded extents found; nothing left %.1f s after D-node %d's "
            "restart; %d bytes rebuilt in all" % (degraded_found1, took1, victim,
                                                   st1["bytes_rebuilt"]))

        others = rnd.sample([i for i in range(DNODES) if i != victim], 2)
        kill_dnodes(c, others)
        log("killed D-nodes %d and %d (SIGKILL): %d of %d live" % (
            others[0], others[1], DNODES - 2, DNODES))
        read_back(c, acked, t_kill1, "phase 1: D-node %d repaired, D-nodes %d and %d down" % (
            victim, others[0], others[1]))
        for i in others:
            c.start("dnode", i)
        t_restart = time.monotonic()
        log("restarted D-nodes %d and %d" % tuple(others))
        probes = probe_writes(c, random.Random(rnd.getrandbits(64)), "probe", t_restart)
        acked += [w for w in probes if w["ok"]]
        log("     writes succeed through both C-nodes over S3 and NFS again (%d probes, %d "
            "failed)" % (len(probes), sum(1 for w in probes if not w["ok"])))

        # ---- Phase 2: a D-node replaced by an empty one ----
        y = rnd.choice([i for i in range(DNODES) if i != victim])
        y_addr = c.env["DNODES"].split()[y]
        writes2, t_kill2 = write_around_kill(c, rnd, "p2", y, SECONDS2)
        degraded2 = judge_writes(writes2, t_kill2, y, MIN_DEGRADED2, "phase 2")
        acked += [w for w in writes2 if w["ok"]]

        t = time.monotonic()
        p = c.local("add")
        log("add: %s (%.1f s)" % (p.stdout.strip(), time.monotonic() - t))
        new = DNODES
        out = map_show(c)
        rows = {int(l.split()[1]): l for l in out.splitlines() if l.startswith("dnode ")}
        check(len(rows) == DNODES + 1 and new in rows,
              "map show after adding a D-node:\n%s" % out)
        check(rows[y].split()[3] == y_addr, "map show names D-node %d at %s, cluster.env at %s:"
              "\n%s" % (y, rows[y].split()[3], y_addr, out))
        t_out = time.monotonic()
        p = ctl(c, "map", "out", y_addr, timeout=120)
        check(p.returncode == 0, "map out %s: %s%s" % (y_addr, p.stdout.decode(errors="replace"),
                                                       p.stderr.decode(errors="replace")))
        out = map_show(c)
        row = [l for l in out.splitlines() if l.startswith("dnode %d " % y)][0]
        check("state=out " in row, "D-node %d is not out after map out: %s" % (y, row))
        log("D-node %d (%s) taken out of the map" % (y, y_addr))
        out = wait_converged(c, {y})
        log("     shard replicas left D-node %d in %.1f s\n%s" % (y, time.monotonic() - t_out,
                                                                    out.rstrip()))
        runs2, st2, took2 = repair_until_clean(c, t_out, "phase 2")
        check(st2["bytes_rebuilt"] > st1["bytes_rebuilt"],
              "phase 2: D-node %d taken out, but `repair status` bytes_rebuilt did not grow "
              "(%d after phase 1, %d now)" % (y, st1["bytes_rebuilt"], st2["bytes_rebuilt"]))
        run_bytes = sum(f["bytes"] for f in runs1 + runs2)
        log("ok   phase 2: nothing left %.1f s after D-node %d was taken out; %d bytes rebuilt "
            "in phase 2 (%d by `repair run` in both phases, the rest by the background "
            "service)" % (took2, y, st2["bytes_rebuilt"] - st1["bytes_rebuilt"], run_bytes))

        others2 = rnd.sample([i for i in range(DNODES) if i != y], 2)
        kill_dnodes(c, others2)
        log("killed D-nodes %d and %d (SIGKILL): with D-node %d out and down, %d of %d live" % (
            others2[0], others2[1], y, DNODES + 1 - 3, DNODES + 1))
        read_back(c, acked, t_kill1, "phase 2: D-node %d replaced, D-nodes %d and %d down" % (
            y, others2[0], others2[1]))
        log("summary: %d writes acknowledged (%d bytes); %d of them with D-node %d down, %d "
            "with D-node %d down; %d degraded extents found in phase 1; repair done %.1f s "
            "after D-node %d's restart and %.1f s after D-node %d was taken out; %d bytes "
            "rebuilt (%d in phase 1); test %.0f s" % (
                len(acked), sum(w["size"] for w in acked), len(degraded1), victim,
                len(degraded2), y, degraded_found1, took1, victim, took2, y,
                st2["bytes_rebuilt"], st1["bytes_rebuilt"], time.monotonic() - t0))


if __name__ == "__main__":
    main(test)
