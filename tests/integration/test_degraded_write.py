#!/usr/bin/python3
"""Degraded writes: S3 PUTs and NFS writes keep succeeding with a D-node down, and fail
cleanly below the minimum.

6 D-nodes, EC 4+2 (fragments of 256 KiB, so a stripe holds 1 MiB and the 1-3 MiB writes span
several stripes), 2 C-nodes.  Four writers, S3 and NFS through each C-node, write objects of
a few bytes (inline in the inode), about 300 KB (one partial stripe) and 1-3 MiB, each under
a name of its own: S3 by boto3 put_object, NFS by `nfscheck write` (CREATE with truncate,
WRITE, COMMIT; content from a seed).  After a baseline with no fault one D-node is killed
with SIGKILL and the writers go on:

- of the writes that start 10 s or more after the kill, at least 99% succeed (the C-nodes
  noticed the dead D-node and write around it, with k + 1 = 5 live D-nodes enough);
- with the D-node still down, every acknowledged write reads back byte for byte through both
  C-nodes over both S3 GET and NFS READ;
- a second D-node killed (4 live = k, below the minimum k + 1): S3 PUTs fail with a 5xx and
  NFS writes fail (JUKEBOX/EIO), within a bound, none hangs and none is acknowledged;
- both D-nodes restarted: writes succeed again through both C-nodes and both protocols, and
  everything acknowledged reads back identical once more, through both of each.

CAIRN_DW_SEED changes the victims and the write mix; CAIRN_DW_SECONDS how long the writers
run after the kill (default 28).
"""
import os
import random
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError,
                                 ReadTimeoutError)

from cluster import NFSCHECK, Cluster, check, clip, log, main, sha256
from test_race_writers import gen

B = "degraded"
K, M = 4, 2
DNODES = K + M
FRAG = 256 * 1024          # a stripe holds 1 MiB of data
BASELINE = 6.0             # seconds of writes before the kill
SECONDS = float(os.environ.get("CAIRN_DW_SECONDS", "28"))  # seconds of writes after it
GRACE = 10.0               # writes starting this long after the kill must succeed ...
MIN_OK = 0.99              # ... this fraction of them
MIN_LATE = 20              # ... of at least this many writes started in that window,
MIN_LATE_PROTO = 5         # at least this many of each protocol
PACE = 0.4                 # a writer starts at most one write per PACE seconds
WRITE_TIMEOUT = 60         # one write while writers run (S3 read timeout, nfscheck's bound)
BELOW_TIMEOUT = 45         # one write below the minimum must fail within this
RECOVER_TIMEOUT = 90       # writes succeed again within this after the restarts


def size_class(size):
    return "inline" if size <= 64 else "~300 KB" if size < 1 << 20 else "1-3 MiB"


def pick_size(rnd):
    r = rnd.random()
    if r < 0.25:
        return rnd.randint(1, 64)                         # inline in the inode
    if r < 0.6:
        return 300_000 + rnd.randrange(4096)             # one partial stripe
    return rnd.randint(1 << 20, 3 << 20)                  # 1 to 3 stripes


class History:
    def __init__(self):
        self.lock = threading.Lock()
        self.writes = []

    def add(self, w):
        with self.lock:
            self.writes.append(w)


def s3_put(client, node, name, size, rnd, timeout=WRITE_TIMEOUT):
    """One S3 PUT of size random bytes through client (whose read timeout is timeout);
    returns its record."""
    body = rnd.randbytes(size)
    w = {"proto": "S3", "node": node, "name": name, "size": size, "sha": sha256(body),
         "start": time.monotonic()}
    try:
        client.put_object(Bucket=B, Key=name, Body=body)
        w["ok"] = True
    except ClientError as e:
        w["ok"] = False
        w["status"] = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        w["err"] = "HTTP %s %s" % (w["status"], e.response.get("Error", {}).get("Code"))
    except (ReadTimeoutError, ConnectTimeoutError) as e:
        w["ok"] = False
        w["hung"] = True
        w["err"] = "no answer in %d s (%s)" % (timeout, type(e).__name__)
    except BotoCoreError as e:
        w["ok"] = False
        w["err"] = "%s: %s" % (type(e).__name__, str(e)[:120])
    w["end"] = time.monotonic()
    return w


def nfs_write(c, node, name, size, seed, timeout=WRITE_TIMEOUT):
    """One `nfscheck write` (CREATE, WRITE, COMMIT) of size bytes from seed; returns its
    record."""
    w = {"proto": "NFS", "node": node, "name": name, "size": size, "seed": seed,
         "start": time.monotonic()}
    try:
        p = subprocess.run([NFSCHECK, "write", c.nfs_url("/", node), "%s/%s" % (B, name),
                            str(size), str(seed)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        w["ok"] = p.returncode == 0
        if not w["ok"]:
            lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
            w["err"] = "nfscheck exit %d: %s" % (p.returncode,
                                                 lines[-1][:160] if lines else "(no output)")
    except subprocess.TimeoutExpired:
        w["ok"] = False
        w["hung"] = True
        w["err"] = "no answer in %d s" % timeout
    w["end"] = time.monotonic()
    return w


def expected_sha(w):
    if "sha" not in w:
        w["sha"] = sha256(gen(w["seed"], w["size"]))
    return w["sha"]


def writer(c, proto, node, stop, hist, rnd):
    client = c.boto3_client(node=node, read_timeout=WRITE_TIMEOUT) if proto == "S3" else None
    n = 0
    while not stop.is_set():
        name = "%s%d-%05d" % (proto.lower(), node, n)
        size = pick_size(rnd)
        if proto == "S3":
            w = s3_put(client, node, name, size, rnd)
        else:
            w = nfs_write(c, node, name, size, rnd.getrandbits(63))
        hist.add(w)
        n += 1
        # Paced, so that reading everything back twice stays within the test's time.
        stop.wait(w["start"] + PACE - time.monotonic())


def describe(w, t0):
    return "%s %s via C-node %d (%d bytes, started %+.1f s, answered %+.1f s)%s" % (
        w["proto"], w["name"], w["node"], w["size"], w["start"] - t0, w["end"] - t0,
        ": " + w["err"] if not w["ok"] else "")


def read_back(c, acked, t0, label):
    """Read every acknowledged write through both C-nodes, over S3 and over NFS, and compare
    with what was acknowledged."""
    for w in acked:
        expected_sha(w)  # before the threads, which only read it
    clients = [c.boto3_client(node=n, read_timeout=120) for n in (0, 1)]

    def one(job):
        w, node, proto = job
        try:
            if proto == "S3":
                got = clients[node].get_object(Bucket=B, Key=w["name"])["Body"].read()
            else:
                dst = os.path.join(c.dir, "readback-%d" % threading.get_ident())
                p = c.nfs_cp(c.nfs_url("/%s/%s" % (B, w["name"]), node), dst, timeout=120,
                             check_rc=False)
                if p.returncode:
                    return "%s: NFS read via C-node %d failed (%d): %s" % (
                        describe(w, t0), node, p.returncode, clip(p.stdout, 200))
                with open(dst, "rb") as f:
                    got = f.read()
        except (ClientError, BotoCoreError) as e:
            return "%s: S3 GET via C-node %d failed: %s" % (describe(w, t0), node,
                                                            str(e)[:200])
        except subprocess.TimeoutExpired:
            return "%s: NFS read via C-node %d did not finish in 120 s" % (describe(w, t0),
                                                                          node)
        if len(got) != w["size"] or sha256(got) != w["sha"]:
            return "%s: %s read via C-node %d returns %d bytes%s" % (
                describe(w, t0), proto, node, len(got),
                ", different content" if len(got) == w["size"] else "")
        return None

    t = time.monotonic()
    jobs = [(w, node, proto) for w in acked for node in (0, 1) for proto in ("S3", "NFS")]
    with ThreadPoolExecutor(4) as ex:
        bad = [r for r in ex.map(one, jobs) if r]
    check(not bad, "%s: %d of %d reads of acknowledged writes failed or returned other "
          "bytes, e.g.:\n  %s" % (label, len(bad), len(jobs), "\n  ".join(bad[:10])))
    log("ok   %s: all %d acknowledged writes (%d bytes) read back identical through both "
        "C-nodes over S3 and NFS (%d reads, %.1f s)" % (
            label, len(acked), sum(w["size"] for w in acked), len(jobs), time.monotonic() - t))


def test():
    rnd = random.Random(int(os.environ.get("CAIRN_DW_SEED", "17")))
    with Cluster(dnodes=DNODES, ec="%d+%d" % (K, M), cnodes=2, frag_size=FRAG) as c:
        c.boto3_client().create_bucket(Bucket=B)
        hist = History()
        stop = threading.Event()
        threads = [threading.Thread(target=writer, args=(c, proto, node, stop, hist,
                                                         random.Random(rnd.getrandbits(64))))
                   for proto in ("S3", "NFS") for node in (0, 1)]
        for t in threads:
            t.start()
        victim = rnd.randrange(DNODES)
        try:
            time.sleep(BASELINE)
            t_kill = time.monotonic()
            c.kill_now("dnode", victim)
            log("killed D-node %d (SIGKILL) after %.0f s of writes; writers go on for %.0f s" %
                (victim, BASELINE, SECONDS))
            time.sleep(SECONDS)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=WRITE_TIMEOUT + 30)
        check(not any(t.is_alive() for t in threads), "a writer did not stop within %d s" %
              (WRITE_TIMEOUT + 30))

        writes = sorted(hist.writes, key=lambda w: w["start"])
        base = [w for w in writes if w["end"] < t_kill]
        during = [w for w in writes if w["end"] >= t_kill]
        late = [w for w in writes if w["start"] - t_kill >= GRACE]
        late_ok = [w for w in late if w["ok"]]
        after = [w for w in writes if w["start"] >= t_kill]
        first_ok = next((w for w in after if w["ok"]), None)
        failed = [w for w in during if not w["ok"]]
        log("baseline: %d writes, %d failed; D-node %d down: %d writes (%d S3, %d NFS), "
            "%d failed" % (len(base), sum(1 for w in base if not w["ok"]), victim, len(during),
                           sum(1 for w in during if w["proto"] == "S3"),
                           sum(1 for w in during if w["proto"] == "NFS"), len(failed)))
        if failed:
            log("failures started from %+.1f s to %+.1f s after the kill; the first: %s" % (
                failed[0]["start"] - t_kill, failed[-1]["start"] - t_kill,
                describe(failed[0], t_kill)))
        if first_ok:
            log("first write started after the kill that succeeded: started %+.1f s, "
                "acknowledged %+.1f s (%s)" % (first_ok["start"] - t_kill,
                                               first_ok["end"] - t_kill, first_ok["name"]))
        else:
            log("no write started after the kill succeeded")
        log("writes started >= %.0f s after the kill: %d, %d succeeded (%s)" % (
            GRACE, len(late), len(late_ok), ", ".join(
                "%s %s %d/%d" % (proto, cls, sum(1 for w in late if w["ok"] and
                                                 w["proto"] == proto and
                                                 size_class(w["size"]) == cls),
                                 sum(1 for w in late if w["proto"] == proto and
                                     size_class(w["size"]) == cls))
                for proto in ("S3", "NFS") for cls in ("inline", "~300 KB", "1-3 MiB"))))

        check(len(base) >= 4, "only %d writes finished in the %.0f s baseline" %
              (len(base), BASELINE))
        base_bad = [w for w in base if not w["ok"]]
        check(not base_bad, "with no fault %d of %d writes failed, e.g. %s" % (
            len(base_bad), len(base), describe(base_bad[0], t_kill) if base_bad else ""))
        # Failures first: with few writes in the window (each failing one may take seconds)
        # the count checks below would hide them.
        late_bad = [w for w in late if not w["ok"]]
        check(len(late_ok) >= MIN_OK * len(late),
              "with D-node %d of %d down (EC %d+%d), %d of %d writes that started >= %.0f s "
              "after the kill failed (%.1f%% succeeded, need %.0f%%): %d S3, %d NFS; e.g.\n  %s" %
              (victim, DNODES, K, M, len(late_bad), len(late), GRACE,
               100.0 * len(late_ok) / max(1, len(late)), 100 * MIN_OK,
               sum(1 for w in late_bad if w["proto"] == "S3"),
               sum(1 for w in late_bad if w["proto"] == "NFS"),
               "\n  ".join(describe(w, t_kill) for w in late_bad[:6])))
        check(len(late) >= MIN_LATE, "only %d writes started >= %.0f s after the kill, need "
              "%d to judge" % (len(late), GRACE, MIN_LATE))
        for proto in ("S3", "NFS"):
            n = sum(1 for w in late if w["proto"] == proto)
            check(n >= MIN_LATE_PROTO, "only %d %s writes started >= %.0f s after the kill "
                  "(writers stuck?), need %d" % (n, proto, GRACE, MIN_LATE_PROTO))
        log("ok   %.1f%% of writes started >= %.0f s after the kill succeeded" % (
            100.0 * len(late_ok) / len(late), GRACE))

        # With the D-node still down, every acknowledged write reads back.
        status = c.local("status").stdout
        check("%d of %d D-nodes up" % (DNODES - 1, DNODES) in status,
              "D-node %d should still be down:\n%s" % (victim, status))
        acked = [w for w in writes if w["ok"]]
        read_back(c, acked, t_kill, "D-node %d down" % victim)

        # A second D-node down: 4 live = k, below the minimum of k + 1.  Writes fail, each
        # with a clear error within BELOW_TIMEOUT, none acknowledged.
        second = rnd.choice([i for i in range(DNODES) if i != victim])
        c.kill_now("dnode", second)
        t_second = time.monotonic()
        time.sleep(2)
        log("killed D-node %d too: %d of %d D-nodes live" % (second, DNODES - 2, DNODES))
        below = History()

        def below_writer(proto, node, wrnd):
            client = (c.boto3_client(node=node, read_timeout=BELOW_TIMEOUT)
                      if proto == "S3" else None)
            for j, size in enumerate((300_000 + wrnd.randrange(4096),
                                      (2 << 20) + wrnd.randrange(4096))):
                name = "below-%s%d-%d" % (proto.lower(), node, j)
                if proto == "S3":
                    below.add(s3_put(client, node, name, size, wrnd, BELOW_TIMEOUT))
                else:
                    below.add(nfs_write(c, node, name, size, wrnd.getrandbits(63),
                                        timeout=BELOW_TIMEOUT))

        bthreads = [threading.Thread(target=below_writer,
                                     args=(proto, node, random.Random(rnd.getrandbits(64))))
                    for proto in ("S3", "NFS") for node in (0, 1)]
        for t in bthreads:
            t.start()
        for t in bthreads:
            t.join(timeout=2 * BELOW_TIMEOUT + 30)
        check(not any(t.is_alive() for t in bthreads), "writes with 2 D-nodes down did not "
              "finish within %d s" % (2 * BELOW_TIMEOUT + 30))
        for w in sorted(below.writes, key=lambda w: (w["proto"], w["node"], w["name"])):
            log("     below the minimum: %s %s via C-node %d (%d bytes): %s in %.1f s" % (
                w["proto"], w["name"], w["node"], w["size"],
                "ACKNOWLEDGED" if w["ok"] else w["err"], w["end"] - w["start"]))
        check(len(below.writes) == 8, "%d of 8 writes below the minimum recorded" %
              len(below.writes))
        for w in below.writes:
            what = "%s %s via C-node %d with D-nodes %d and %d down (%d live, below k + 1 = %d)" % (
                w["proto"], w["name"], w["node"], victim, second, DNODES - 2, K + 1)
            check(not w["ok"], "%s was acknowledged; it must fail" % what)
            check(not w.get("hung"), "%s hung: %s" % (what, w["err"]))
            if w["proto"] == "S3":
                check(w.get("status") and 500 <= w["status"] < 600,
                      "%s failed with %s, not an HTTP 5xx" % (what, w["err"]))
        log("ok   with %d of %d D-nodes live all %d S3 and NFS writes failed cleanly" % (
            DNODES - 2, DNODES, len(below.writes)))

        # Both back: writes succeed again, through both C-nodes and both protocols.
        for i in (victim, second):
            c.start("dnode", i)
        t_restart = time.monotonic()
        log("restarted D-nodes %d and %d" % (victim, second))
        probes = []
        pending = {(proto, node) for proto in ("S3", "NFS") for node in (0, 1)}
        prnd = random.Random(rnd.getrandbits(64))
        pclients = [c.boto3_client(node=n, read_timeout=WRITE_TIMEOUT) for n in (0, 1)]
        last_err = {}
        n = 0
        while pending and time.monotonic() - t_restart < RECOVER_TIMEOUT:
            for proto, node in sorted(pending):
                name = "probe-%s%d-%d" % (proto.lower(), node, n)
                size = (1 << 20) + prnd.randrange(1 << 20)
                w = (s3_put(pclients[node], node, name, size, prnd) if proto == "S3" else
                     nfs_write(c, node, name, size, prnd.getrandbits(63)))
                probes.append(w)
                if w["ok"]:
                    pending.discard((proto, node))
                else:
                    last_err[(proto, node)] = w["err"]
            n += 1
            if pending:
                time.sleep(1)
        check(not pending, "%.0f s after D-nodes %d and %d restarted, writes still fail: %s" % (
            RECOVER_TIMEOUT, victim, second, "; ".join(
                "%s via C-node %d: %s" % (p, nd, last_err.get((p, nd))) for p, nd in
                sorted(pending))))
        log("ok   writes succeed again through both C-nodes over S3 and NFS %.1f s after the "
            "restart (%d probe writes, %d failed)" % (
                max(w["end"] for w in probes) - t_restart, len(probes),
                sum(1 for w in probes if not w["ok"])))

        acked += [w for w in probes if w["ok"]]
        read_back(c, acked, t_kill, "after the restart")
        log("summary: %d writes with D-node %d down, %d acknowledged; %d started >= %.0f s "
            "after the kill, %d succeeded; first success after the kill acknowledged at %s; "
            "%d writes below the minimum all failed; %.0f s from the second kill to the "
            "restart" % (len(during), victim, sum(1 for w in during if w["ok"]), len(late),
                         GRACE, len(late_ok),
                         "%+.1f s" % (first_ok["end"] - t_kill) if first_ok else "never",
                         len(below.writes), t_restart - t_second))


if __name__ == "__main__":
    main(test)
