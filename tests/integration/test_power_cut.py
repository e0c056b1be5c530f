#!/usr/bin/python3
"""A power cut: every process of the cluster killed at the same instant under writes, then
the cluster started again on the same devices; every acknowledged write is there.

6 D-nodes, EC 4+2 (fragments of 256 KiB), 2 C-nodes.  Four writers, S3 (boto3 PUT) and NFS
(`nfscheck write`: CREATE, WRITE, COMMIT) through each C-node, with test_degraded_write's
sizes (a few bytes inline, about 300 KB, 1-3 MiB).  The S3 writers overwrite a few names each
(NAMES per writer, the same names in every round, so objects written before one cut are
replaced after it): for every name the test keeps the last acknowledged content and the
contents of the writes that failed after it (a PUT cut short may or may not have been
published, as in test_kill_during_writes).  The NFS writers write new names only: an NFS
overwrite truncates first and is not atomic, so a cut one may leave any prefix.

A round: the writers run for WRITE_SECONDS, then SIGKILL goes to every D-node and C-node in
one loop (pids from DIR/*/pid, read before the first kill), the writers stop (what they had
in flight fails; an `nfscheck` still waiting on its dead C-node is killed), and `cairn-local
up` starts the same cluster again.  Then:

- every acknowledged write (of this round and the earlier ones) reads back byte for byte
  through both C-nodes over S3 GET and NFS READ (nfs-cp); an overwritten name reads as its
  last acknowledged content or as one a later failed write may have published;
- S3 ListObjectsV2 of the bucket, through each C-node, names every acknowledged key.

What it cannot see: SIGKILL ends processes, not the machine, so bytes a process wrote but
never flushed survive in the page cache; a missing fsync needs a crash of the host (or a
fault-injecting device) to show.  What it sees is anything acknowledged before it was written
at all: a reply sent ahead of the fragment or record writes, a commit kept in memory, state
a restart does not read back.  The writes go to test_degraded_write's bucket, whose helpers
they reuse.

ROUNDS cuts (CAIRN_POWERCUT_ROUNDS, default 2); CAIRN_POWERCUT_SEED changes the write mix and
the cut times.
"""
import os
import random
import signal
import threading
import time

from cluster import Cluster, check, log, main
from test_degraded_write import B, WRITE_TIMEOUT, describe, nfs_write, pick_size, s3_put
from test_repair import read_back


K, M = 4, 2
DNODES = K + M
CNODES = 2
FRAG = 256 * 1024
ROUNDS = int(os.environ.get("CAIRN_POWERCUT_ROUNDS", "2"))
WRITE_SECONDS = 5.0          # writes before each cut (plus up to 2 s at random)
NAMES = 6                    # names each S3 writer overwrites
PACE = 0.3                   # a writer starts at most one write per PACE seconds
MIN_ACKED = 3                # acknowledged writes of each protocol per round, at least


class Ledger:
    """What the writers were told: for S3 names the last acknowledged write (its record
    carries "maybe", the digests failed writes after it may have published), for NFS every
    acknowledged write."""

    def __init__(self):
        self.lock = threading.Lock()
        self.s3 = {}       # name -> record of the last acknowledged PUT
        self.pending = {}  # name -> digests of PUTs that failed after it (or before any ack)
        self.nfs = []
        self.failed = []
        self.acked = 0

    def add(self, w):
        with self.lock:
            if not w["ok"]:
                self.failed.append(w)
                if w["proto"] == "S3":
                    self.pending.setdefault(w["name"], set()).add(w["sha"])
                    if w["name"] in self.s3:
                        self.s3[w["name"]]["maybe"] = set(self.pending[w["name"]])
                return
            self.acked += 1
            if w["proto"] == "S3":
                self.pending[w["name"]] = set()
                self.s3[w["name"]] = w
            else:
                self.nfs.append(w)

    def records(self):
        """The acknowledged writes to check, one per name."""
        with self.lock:
            return sorted(self.s3.values(), key=lambda w: w["name"]) + list(self.nfs)


def writer(c, proto, node, rnd, stop, ledger, counter):
    client = c.boto3_client(node=node, read_timeout=WRITE_TIMEOUT) if proto == "S3" else None
    while not stop.is_set():
        size = pick_size(rnd)
        if proto == "S3":
            w = s3_put(client, node, "s3n%d-k%d" % (node, rnd.randrange(NAMES)), size, rnd)
        else:
            counter[0] += 1
            w = nfs_write(c, node, "nfs%d-%05d" % (node, counter[0]), size, rnd.getrandbits(63))
        ledger.add(w)
        stop.wait(w["start"] + PACE - time.monotonic())


def power_cut(c):
    """SIGKILL to every D-node and C-node of c at once; returns the pids once all are gone."""
    pids = []
    for kind, n in (("dnode", DNODES), ("cnode", CNODES)):
        pids += [c.pid(kind, i) for i in range(n)]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        break
            except FileNotFoundError:
                break
            time.sleep(0.01)
        else:
            check(False, "process %d still runs 10 s after SIGKILL" % pid)
    return pids


def stop_nfscheck():
    """SIGKILL to the nfscheck processes this test runs: one whose C-node died waits out its
    RPC deadline (120 s) instead of failing."""
    me = str(os.getpid())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % pid) as f:
                comm, rest = f.read().rsplit(")", 1)
            if rest.split()[1] == me and comm.endswith("(nfscheck"):
                os.kill(int(pid), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass


def check_listing(c, records, label):
    """ListObjectsV2 of the bucket through each C-node names every acknowledged key."""
    want = {w["name"] for w in records}
    for node in range(CNODES):
        s3 = c.boto3_client(node=node)
        keys = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B):
            keys.update(o["Key"] for o in page.get("Contents", []))
        missing = sorted(want - keys)
        check(not missing, "%s: ListObjectsV2 through C-node %d lacks %d of %d acknowledged "
              "keys, e.g. %s" % (label, node, len(missing), len(want), missing[:10]))
    log("ok   %s: ListObjectsV2 through both C-nodes names all %d acknowledged keys (%d in the "
        "bucket)" % (label, len(want), len(keys)))


def test():
    rnd = random.Random(int(os.environ.get("CAIRN_POWERCUT_SEED", "41")))
    with Cluster(dnodes=DNODES, ec="%d+%d" % (K, M), cnodes=CNODES, frag_size=FRAG) as c:
        c.boto3_client().create_bucket(Bucket=B)
        ledger = Ledger()
        counters = {(proto, node): [0] for proto in ("S3", "NFS") for node in range(CNODES)}
        seeds = {key: rnd.getrandbits(64) for key in counters}
        for r in range(ROUNDS):
            stop = threading.Event()
            before = ledger.acked
            t_round = time.monotonic()
            threads = [threading.Thread(target=writer, args=(
                c, proto, node, random.Random(seeds[(proto, node)] + r), stop, ledger,
                counters[(proto, node)])) for proto, node in sorted(counters)]
            for t in threads:
                t.start()
            try:
                time.sleep(WRITE_SECONDS + 2 * rnd.random())
                t_cut = time.monotonic()
                pids = power_cut(c)
            finally:
                # Every writer stops before the restart: a write still running could finish
                # on the new processes and be counted as cut short.
                stop.set()
                stop_nfscheck()
                for t in threads:
                    t.join(timeout=WRITE_TIMEOUT + 30)
            check(not any(t.is_alive() for t in threads), "a writer did not stop within %d s" %
                  (WRITE_TIMEOUT + 30))
            failed = [w for w in ledger.failed if w["start"] >= t_round]
            cut_short = [w for w in failed if w["end"] >= t_cut]
            log("round %d: power cut after %.1f s of writes: %d processes killed at once; %d "
                "writes acknowledged this round, %d cut short" % (
                    r + 1, t_cut - t_round, len(pids), ledger.acked - before, len(cut_short)))
            done = [w for w in ledger.records() if w["start"] >= t_round]
            if done:
                slow = max(done, key=lambda w: w["end"] - w["start"])
                log("     slowest acknowledged write: %.1f s (%s)" % (
                    slow["end"] - slow["start"], describe(slow, t_cut)))
            for w in cut_short:
                log("     cut short: %s" % describe(w, t_cut))
            early = [w for w in failed if w["end"] < t_cut]
            check(not early, "round %d: %d writes failed before the cut, e.g. %s" % (
                r + 1, len(early), describe(early[0], t_cut) if early else ""))
            records = ledger.records()
            for proto in ("S3", "NFS"):
                n = sum(1 for w in records if w["proto"] == proto and w["start"] >= t_round and
                        w["end"] < t_cut)
                check(n >= MIN_ACKED, "round %d: only %d %s writes acknowledged" % (
                    r + 1, n, proto))
            t = time.monotonic()
            c.up()
            log("round %d: cluster up again in %.1f s" % (r + 1, time.monotonic() - t))
            label = "after power cut %d" % (r + 1)
            read_back(c, records, t_cut, label)
            check_listing(c, records, label)
        log("summary: %d power cuts; %d writes acknowledged, %d cut short; %d names checked "
            "(%d S3 names overwritten in place, %d NFS files)" % (
                ROUNDS, ledger.acked, len(ledger.failed), len(ledger.records()),
                len(ledger.s3), len(ledger.nfs)))


if __name__ == "__main__":
    main(test)
