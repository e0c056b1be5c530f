#!/usr/bin/python3
"""Metadata records stay linearizable while D-nodes are killed, paused and cut off and
C-nodes restart.

Six D-nodes, each in a network namespace of its own (cairn-local --netns).  Several C-node
metadata layers (linclient processes: the cluster views and meta/rec.h code a C-node runs,
each thread with its own view) do random reads, writes and compare-and-sets on a few
records, logging every operation's invocation and completion.  Meanwhile a fault injector,
on a schedule drawn from --seed, kills D-nodes with SIGKILL and restarts them, pauses them
(SIGSTOP, then SIGCONT: a leader that wakes up after its lease ran out must not answer from
its old state), cuts their links and heals them (a partition: connections stall, nothing is
reset), and kills C-node processes mid-operation and starts new ones.  At most --max-down
D-nodes are faulty at once (m = 2: every shard keeps a majority of its 5 replicas; more
makes shards unavailable, which must still be safe).  After the schedule, every fault is
healed, each record is read once more, and lincheck.py searches the whole history for a
linearization (Wing & Gong / Porcupine), key by key.

    test_linearizable.py [--seconds S] [--seed N] [--max-down D] [--clients C]

CI runs the default short schedule; a long one is run by hand (see docs/testing.md).
"""
import argparse
import os
import random
import subprocess
import sys
import time

import lincheck
from cluster import BUILD, Cluster, check, main
from cluster import log as log_plain


def log(msg):
    """Lines carry the monotonic clock too: the history's clock, to place faults in it."""
    log_plain("%.3f %s" % (time.monotonic(), msg))

LINCLIENT = os.path.join(BUILD, "tests", "integration", "linclient")
KINDS = ("kill", "pause", "cut", "cnode")


class Clients:
    """The C-node processes; each incarnation has a proc id of its own."""

    def __init__(self, c, args, hist, end):
        self.c, self.args, self.hist, self.end = c, args, hist, end
        self.procs = {}
        self.next_id = 1
        self.incarnations = 0

    def start(self, slot):
        left = max(1, int(self.end - time.monotonic() + 0.999))
        pid = self.next_id
        self.next_id += 1
        self.incarnations += 1
        logf = open(os.path.join(self.c.dir, "linclient%d.log" % pid), "wb")
        self.procs[slot] = subprocess.Popen(
            [LINCLIENT, "-c", os.path.join(self.c.dir, "cluster.env"), "--out", self.hist,
             "--proc", str(pid), "--threads", str(self.args.threads), "--keys",
             str(self.args.keys), "--seconds", str(left), "--seed", str(self.args.seed),
             "--run", "s%d" % self.args.seed, "--leader-wait-ms", "4000"],
            stdout=logf, stderr=subprocess.STDOUT)
        logf.close()

    def kill(self, slot):
        p = self.procs[slot]
        p.kill()
        p.wait()

    def wait(self):
        for slot, p in self.procs.items():
            try:
                rc = p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                check(False, "C-node process %d still running 120 s after its time" % slot)
            check(rc == 0, "C-node process in slot %d failed (%d); see %s" % (slot, rc,
                                                                              self.c.dir))


def run(args):
    rnd = random.Random(args.seed)
    with Cluster(dnodes=6, ec="4+2", cnodes=0, netns=True) as c:
        hist = os.path.join(c.dir, "history.jsonl")
        t0 = time.monotonic()
        end = t0 + args.seconds
        clients = Clients(c, args, hist, end)
        for slot in range(args.clients):
            clients.start(slot)
        faulty = {}  # D-node -> (kind, heal at)
        done = {k: 0 for k in KINDS}
        cycle = []

        def heal(i):
            kind, _ = faulty.pop(i)
            if kind == "kill":
                c.start("dnode", i)
            elif kind == "pause":
                c.resume("dnode", i)
            else:
                c.heal(i)
            log("  heal %s of D-node %d" % (kind, i))

        while True:
            now = time.monotonic()
            for i in [i for i, (_, at) in faulty.items() if at <= now]:
                heal(i)
            if now + 1.0 >= end:
                break
            if not cycle:
                cycle = list(KINDS)
                rnd.shuffle(cycle)
            kind = cycle.pop()
            if kind == "cnode":
                slot = rnd.randrange(args.clients)
                clients.kill(slot)
                clients.start(slot)
                done[kind] += 1
                log("fault: C-node process in slot %d killed and started again" % slot)
            elif len(faulty) < args.max_down:
                i = rnd.choice([i for i in range(6) if i not in faulty])
                hold = rnd.uniform(0.5, 6.0)
                if kind == "kill":
                    c.kill_now("dnode", i)
                elif kind == "pause":
                    c.pause("dnode", i)
                else:
                    c.cut(i)
                faulty[i] = (kind, time.monotonic() + hold)
                done[kind] += 1
                log("fault: %s D-node %d for %.1f s" % (kind, i, hold))
            time.sleep(rnd.uniform(0.5, 2.5))
        for i in list(faulty):
            heal(i)
        clients.wait()
        # The state the cluster settled on, read with every fault healed.
        deadline = time.monotonic() + 90
        while True:
            p = subprocess.run([LINCLIENT, "-c", os.path.join(c.dir, "cluster.env"), "--out",
                                hist, "--proc", str(clients.next_id), "--keys",
                                str(args.keys), "--run", "s%d" % args.seed, "--final"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            clients.next_id += 1
            if p.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        check(p.returncode == 0, "final reads failed after every fault healed: %s" % p.stdout)
        log("final state:\n" + p.stdout.rstrip())

        by_key = lincheck.load([hist])
        ops = [o for key_ops in by_key.values() for o in key_ops]
        count = {s: sum(1 for o in ops if o.status == s) for s in ("ok", "fail", "info")}
        cas_ok = sum(1 for o in ops if o.f == "cas" and o.status == "ok")
        writes = sum(1 for o in ops if o.f != "r" and o.status == "ok")
        log("history: %d operations (%d ok, %d failed compare-and-sets, %d unknown outcomes; "
            "%d successful compare-and-sets) from %d C-node processes; faults: %s" % (
                len(ops), count["ok"], count["fail"], count["info"], cas_ok,
                clients.incarnations, ", ".join("%s %d" % kv for kv in done.items())))
        t1 = time.monotonic()
        ok, lines = lincheck.check(by_key)
        for line in lines:
            log(line)
        log("checked in %.1f s" % (time.monotonic() - t1))
        check(ok, "the history is not linearizable (kept in %s)" % hist)
        check(count["ok"] >= 20 * args.seconds // 10 and cas_ok >= 10 and writes >= 20,
              "too few operations succeeded to prove anything: %s" % count)
        if args.seconds >= 40:
            check(all(done.values()), "every kind of fault must have happened: %s" % done)


def test():
    if os.geteuid() != 0:
        print("SKIP: needs root for network namespaces", file=sys.stderr)
        sys.exit(77)
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("CAIRN_LIN_SECONDS",
                                                                       "60")))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CAIRN_LIN_SEED", "1")))
    ap.add_argument("--max-down", type=int, default=2)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--keys", type=int, default=5)
    args = ap.parse_args()
    log("seed %d, %d s, at most %d D-nodes faulty at once, %d C-node processes x %d threads, "
        "%d keys" % (args.seed, args.seconds, args.max_down, args.clients, args.threads,
                     args.keys))
    run(args)


if __name__ == "__main__":
    main(test)
