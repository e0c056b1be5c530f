#!/usr/bin/python3
"""A D-node drained under load: data stays writable and readable while it empties, and then
nothing needs it.

6 D-nodes, EC 4+2 (fragments of 256 KiB), 2 C-nodes running a background repair pass every
5 s.  Four writers, S3 (boto3) and NFS (`nfscheck write`) through each C-node, write objects
of a few bytes, about 300 KB and 1-3 MiB under names of their own and record every
acknowledged write (test_repair's writers).  While they write:

- `cairn-local add` twice: D-nodes 6 and 7 join, and writes made after that put fragments on
  both (their PING fragment counts grow; repair moves nothing before the drain);
- `cairnctl dnode remove V` for one of the first six (the victim) is refused: it is not
  drained;
- `cairnctl dnode drain V` runs; the writers go on for DRAIN_WRITES s and then stop, before the
  drain can end (it ends only with a count begun 10 s after the map change), and a reader reads
  acknowledged writes back, at random through either C-node and either protocol, from the
  adds until the drain has returned: every read must succeed with the acknowledged bytes.

The drain exits 0, its first count found records naming V, its last none.  Then:

- at once, V's fragment count (`cairnctl status`, from its PING) is what no record explains:
  0 when no write failed, else at most one fragment per stripe of the failed writes, which
  `cairnctl gc run` then sweeps to 0;
- every acknowledged write reads back byte for byte through both C-nodes over S3 GET and NFS
  READ (all D-nodes up);
- `dnode remove V` succeeds and `map show` says it is out;
- V is killed, and two more D-nodes with it: an extent still naming V would have three of its
  six positions gone and be unreadable, so every acknowledged write read once (the four ways
  in turn) proves no record needs V.

CAIRN_DRAIN_SEED changes the victim, the D-nodes killed last and the write mix.
"""
import os
import random
import re
import subprocess
import threading
import time

from cluster import CAIRNCTL, Cluster, check, clip, log, main
from test_degraded_write import B, WRITE_TIMEOUT, History, describe
from test_degraded_write import read_back as read_back_strict
from test_gc import fragments
from test_repair import COMBOS, ctl, map_show, read_back, read_one, writer


K, M = 4, 2
DNODES = K + M
FRAG = 256 * 1024            # a stripe holds 1 MiB of data
STRIPE = K * FRAG
INLINE = 64                  # writes of at most this many bytes live in the inode
INTERVAL = 5                 # --repair-interval
BASELINE = 3.0               # seconds of writes before the first add
AFTER_ADD = 5.0              # seconds of writes between the second add and the drain
DRAIN_WRITES = 6.0           # seconds the writers go on once the drain started
DRAIN_TIMEOUT = 150          # `dnode drain --timeout`
READ_PACE = 0.3              # the reader starts a read at most this often
MIN_READS = 10               # reads made while the drain ran, at least
MIN_OK = 0.95                # of all writes, at least this fraction acknowledged
DELETE_GRACE = 5.0           # seconds for a pass's last deletes after the drain's end
GC_GRACE = 2                 # `gc run --grace`: garbage of the failed writes is older

COUNT_RE = re.compile(r": (\d+) extents name it \((\d+) bytes of fragments\), (\d+) shard "
                      r"groups moving")
DONE_RE = re.compile(r": no record names it and no shard group is moving \((\d+) s\); it holds "
                     r"(\d+) fragments")


def reader(c, hist, stop, rnd, t0, reads):
    """Acknowledged writes read back at random (either C-node, either protocol) until stop."""
    clients = [c.boto3_client(node=n, read_timeout=60) for n in (0, 1)]
    while not stop.is_set():
        acked = [w for w in list(hist.writes) if w["ok"]]
        if acked:
            w = rnd.choice(acked)
            node, proto = rnd.choice(COMBOS)
            t = time.monotonic()
            reads.append((t, w, node, proto, read_one(c, clients, w, node, proto, t0,
                                                      timeout=60)))
        stop.wait(READ_PACE)


def test():
    rnd = random.Random(int(os.environ.get("CAIRN_DRAIN_SEED", "31")))
    with Cluster(dnodes=DNODES, ec="%d+%d" % (K, M), cnodes=2, frag_size=FRAG,
                 extra_args=["--repair-interval", str(INTERVAL)]) as c:
        t0 = time.monotonic()
        c.boto3_client().create_bucket(Bucket=B)
        victim = rnd.randrange(DNODES)
        vaddr = c.env["DNODES"].split()[victim]
        hist, reads = History(), []
        stop_w, stop_r = threading.Event(), threading.Event()
        writers = [threading.Thread(target=writer, args=(c, proto, node, "d", stop_w, hist,
                                                         random.Random(rnd.getrandbits(64))))
                   for proto in ("S3", "NFS") for node in (0, 1)]
        rthread = threading.Thread(target=reader, args=(c, hist, stop_r,
                                                        random.Random(rnd.getrandbits(64)),
                                                        t0, reads))
        drain, drain_out = None, []
        for t in writers:
            t.start()
        try:
            time.sleep(BASELINE)
            rthread.start()
            for i in (DNODES, DNODES + 1):
                t = time.monotonic()
                p = c.local("add")
                log("add: %s (%.1f s)" % (p.stdout.strip(), time.monotonic() - t))
            t_added = time.monotonic()
            p = ctl(c, "dnode", "remove", vaddr)
            err = p.stderr.decode(errors="replace").strip()
            check(p.returncode == 1 and "is not drained" in err,
                  "dnode remove of D-node %d (%s), never drained, exited %d: %s%s" % (
                      victim, vaddr, p.returncode, p.stdout.decode(errors="replace"), err))
            log("ok   dnode remove %s before the drain is refused: %s" % (vaddr, err))
            time.sleep(max(0.0, t_added + AFTER_ADD - time.monotonic()))
            before = fragments(c)
            log("fragments per D-node before the drain: %s" % before)
            for i in (DNODES, DNODES + 1):
                check(before.get(i, 0) > 0, "D-node %d was added %.0f s ago under writes but "
                      "holds no fragment: %s" % (i, time.monotonic() - t_added, before))
            check(before.get(victim, 0) > 0, "the victim D-node %d holds no fragment before "
                  "the drain: nothing to prove: %s" % (victim, before))

            t_drain = time.monotonic()
            drain = subprocess.Popen(
                [CAIRNCTL, "-c", os.path.join(c.dir, "cluster.env"), "dnode", "drain", vaddr,
                 "--timeout", str(DRAIN_TIMEOUT)], stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
            log("dnode drain %s (D-node %d) started" % (vaddr, victim))

            def follow():
                for line in drain.stdout:
                    drain_out.append(line.rstrip("\n"))
                    log("     drain: %s" % line.rstrip())
            follower = threading.Thread(target=follow)
            follower.start()
            time.sleep(DRAIN_WRITES)
        finally:
            stop_w.set()
            for t in writers:
                t.join(timeout=WRITE_TIMEOUT + 30)
            t_wstop = time.monotonic()
            try:
                if drain:
                    drain.wait(timeout=DRAIN_TIMEOUT + 60)
            finally:
                stop_r.set()
                if rthread.is_alive():
                    rthread.join(timeout=120)
                if drain and drain.poll() is None:
                    drain.kill()
                    drain.wait()
        follower.join(timeout=10)
        t_drained = time.monotonic()
        check(not any(t.is_alive() for t in writers), "a writer did not stop within %d s" %
              (WRITE_TIMEOUT + 30))
        derr = drain.stderr.read()
        log("dnode drain exited %d after %.1f s (writers stopped %.1f s after it started)%s" % (
            drain.returncode, t_drained - t_drain, t_wstop - t_drain,
            ": " + derr.strip() if derr.strip() else ""))
        check(drain.returncode == 0, "dnode drain %s exited %d:\n%s\n%s" % (
            vaddr, drain.returncode, "\n".join(drain_out), clip(derr)))
        check(t_wstop < t_drained, "the drain ended before the writers stopped")

        # The writes: nearly all acknowledged; what failed bounds the garbage the victim keeps.
        writes = sorted(hist.writes, key=lambda w: w["start"])
        acked = [w for w in writes if w["ok"]]
        failed = [w for w in writes if not w["ok"]]
        during = [w for w in writes if w["end"] >= t_drain]
        log("writes: %d, %d acknowledged (%d S3, %d NFS; %d ended after the drain began), "
            "%d failed" % (len(writes), len(acked), sum(w["proto"] == "S3" for w in acked),
                           sum(w["proto"] == "NFS" for w in acked), len(during), len(failed)))
        for w in failed:
            log("     failed: %s" % describe(w, t_drain))
        check(len(acked) >= MIN_OK * len(writes), "%d of %d writes failed while D-nodes were "
              "added and one drained" % (len(failed), len(writes)))
        check(any(w["ok"] for w in during), "no write ended acknowledged after the drain began")

        # Reads while the drain ran.
        bad = [r for r in reads if r[4]]
        log("reads from the first add to the end of the drain: %d (%d while the drain ran), "
            "%d failed" % (len(reads), sum(r[0] >= t_drain for r in reads), len(bad)))
        check(not bad, "%d of %d reads of acknowledged writes failed or returned other bytes "
              "while D-nodes were added and one drained, e.g.:\n  %s" % (
                  len(bad), len(reads), "\n  ".join(r[4][1] for r in bad[:10])))
        check(sum(r[0] >= t_drain for r in reads) >= MIN_READS,
              "only %d reads while the drain ran" % sum(r[0] >= t_drain for r in reads))

        counts = [tuple(int(x) for x in m.groups()) for m in map(COUNT_RE.search, drain_out)
                  if m]
        done = [m for m in map(DONE_RE.search, drain_out) if m]
        check(counts and counts[0][0] > 0, "the drain's first count found no record naming "
              "D-node %d, which held %d fragments:\n%s" % (victim, before[victim],
                                                          "\n".join(drain_out)))
        check(done, "the drain did not say it ended with no record naming the D-node:\n%s" %
              "\n".join(drain_out))

        # At once, before the background passes have more time: what the drain left behind.
        # A pass deletes a moved position's fragments just after recording the move, so a
        # count that found no record may come a moment before the last deletes: a few
        # seconds' grace.
        garbage_max = sum(-(-w["size"] // STRIPE) for w in failed if w["size"] > INLINE)
        limit = garbage_max if failed else 0
        deadline = time.monotonic() + DELETE_GRACE
        while True:
            after = fragments(c)
            if after.get(victim, 0) <= limit or time.monotonic() > deadline:
                break
            time.sleep(1)
        log("fragments per D-node after the drain: %s; the drain's last line says %s" % (
            after, done[-1].group(2)))
        check(victim in after, "D-node %d does not answer after its drain" % victim)
        if not failed:
            check(after[victim] == 0, "no write failed, yet drained D-node %d still holds %d "
                  "fragments (it held %d)" % (victim, after[victim], before[victim]))
        else:
            check(after[victim] <= garbage_max, "drained D-node %d holds %d fragments, more "
                  "than the %d stripes of the %d failed writes can explain (it held %d)" % (
                      victim, after[victim], garbage_max, len(failed), before[victim]))
            log("     D-node %d keeps %d fragments; the %d failed writes had %d stripes: "
                "garbage for the sweeper" % (victim, after[victim], len(failed), garbage_max))
            if after[victim]:
                time.sleep(GC_GRACE + 1)
                p = ctl(c, "gc", "run", "--grace", str(GC_GRACE), timeout=300)
                log("     gc run: %s" % (p.stdout + p.stderr).decode(errors="replace").strip())
                left = fragments(c).get(victim)
                check(p.returncode == 0 and left == 0, "after `gc run` (exit %d) drained D-node "
                      "%d holds %s fragments" % (p.returncode, victim, left))
        log("ok   drained D-node %d: %d fragments -> %d" % (victim, before[victim],
                                                          after[victim]))

        read_back_strict(c, acked, t_drain, "drained D-node %d, all D-nodes up" % victim)

        p = ctl(c, "dnode", "remove", vaddr)
        check(p.returncode == 0, "dnode remove %s after the drain exited %d: %s%s" % (
            vaddr, p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace")))
        row = [ln for ln in map_show(c).splitlines() if ln.startswith("dnode %d " % victim)]
        check(row and "state=out " in row[0], "D-node %d after dnode remove: %s" % (victim, row))
        log("ok   dnode remove: %s" % p.stdout.decode(errors="replace").strip().replace(
            "\n", "; "))

        others = rnd.sample([i for i in range(DNODES + 2) if i != victim], 2)
        for i in [victim] + others:
            c.kill("dnode", i)
        log("killed D-node %d (removed) and D-nodes %d and %d: %d of %d live" % (
            victim, others[0], others[1], DNODES + 2 - 3, DNODES + 2))
        read_back(c, acked, t_drain, "D-node %d removed and killed, D-nodes %d and %d down" % (
            victim, others[0], others[1]), spread=True)
        log("summary: %d writes acknowledged; drain of D-node %d took %.1f s (%d counts, the "
            "first %d extents); %d reads during it; fragments %d -> %d; test %.0f s" % (
                len(acked), victim, t_drained - t_drain, len(counts),
                counts[0][0], len(reads), before[victim], after[victim],
                time.monotonic() - t0))


if __name__ == "__main__":
    main(test)
