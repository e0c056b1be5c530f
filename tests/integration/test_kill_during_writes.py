#!/usr/bin/env python3
"""kill -9 D-nodes while writes are in flight; after restart every acknowledged write reads
back identical, with no help from parity (the restarted D-node found all its fragments)."""
import random
import threading
import time

from cluster import Cluster, check, log, main, sha256

NAMES = 24  # names are reused, so acknowledged versions get replaced under the kills


def test():
    rnd = random.Random(7)
    with Cluster(dnodes=6, ec="4+2", frag_size=256 * 1024) as c:
        acked = {}      # name -> sha256 of the last acknowledged content
        maybe = {}      # name -> set of sha256 a failed put may still have published
        stats = {"ok": 0, "failed": 0}
        stop = threading.Event()

        def writer(seed):
            wr = random.Random(seed)
            while not stop.is_set():
                name = "k%d" % wr.randrange(NAMES)
                data = wr.randbytes(wr.choice([1, 5000, 300000, 1 << 20, 3 << 20]) +
                                    wr.randrange(4096))
                p = c.put(name + "-" + str(seed), data)
                key = name + "-" + str(seed)
                if p.returncode == 0:
                    acked[key] = sha256(data)
                    maybe[key] = set()
                    stats["ok"] += 1
                else:
                    maybe.setdefault(key, set()).add(sha256(data))
                    stats["failed"] += 1

        threads = [threading.Thread(target=writer, args=(s,)) for s in (1, 2)]
        for t in threads:
            t.start()
        try:
            for round_ in range(3):
                time.sleep(1.0 + rnd.random())
                victim = rnd.randrange(6)
                c.kill("dnode", victim)
                log("round %d: killed D-node %d (acked so far %d, failed %d)" %
                    (round_, victim, stats["ok"], stats["failed"]))
                time.sleep(0.5)
                c.start("dnode", victim)
                log("round %d: D-node %d restarted" % (round_, victim))
            # The writers go on until there is enough to check (a put is a cairnctl process:
            # on a loaded host a few seconds of writes may be only a handful), at most 60 s.
            deadline = time.monotonic() + 60
            time.sleep(1.0)
            while stats["ok"] < 10 and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join()
        log("writes acknowledged %d, failed %d" % (stats["ok"], stats["failed"]))
        check(stats["ok"] >= 10, "too few acknowledged writes to mean anything")

        # Restart everything once more: all state must come from the devices.
        c.down()
        c.up()
        for key, digest in sorted(acked.items()):
            rc, got, err = c.get(key)
            check(rc == 0, "acknowledged %s unreadable after restart: %s" % (key, err))
            ok = {digest} | maybe.get(key, set())
            check(sha256(got) in ok, "acknowledged %s reads back different bytes" % key)
            check("rebuilt" not in err, "%s needed parity after restart: %s" % (key, err))
        log("all %d acknowledged objects read back identical" % len(acked))


if __name__ == "__main__":
    main(test)
