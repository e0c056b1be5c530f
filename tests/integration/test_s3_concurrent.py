#!/usr/bin/python3
"""Concurrent writers on two C-nodes: one writer thread per C-node puts and deletes the same
few keys with distinct bodies for ~20 s while a reader reads them through both.  No read ever
returns a torn or foreign body; at the end each key is absent (the last operation was a
delete) or exactly one of the bodies written to it, and the same through both C-nodes.  The
end state is also checked against the order of the operations: it must be the effect of an
operation that no acknowledged operation followed (no lost update, no resurrected old body)."""
import hashlib
import random
import threading
import time

from botocore.exceptions import ClientError

from cluster import Cluster, check, log, main, sha256

MiB = 1 << 20
B = "conc"
KEYS = ["cc/k%d" % i for i in range(6)] + ["cc/dir/k6", "cc/dir/k7"]
DURATION = 20.0
SIZES = [16, 100, 5000, 200000, MiB + 1, 4 * MiB + 3, 6 * MiB]
TOLERATED = {"OperationAborted"}  # 409: a concurrent change, the client may retry


class Op:
    __slots__ = ("key", "kind", "digest", "start", "end", "ok", "err", "writer")

    def __init__(self, key, kind, digest, writer):
        self.key, self.kind, self.digest, self.writer = key, kind, digest, writer
        self.start = time.monotonic()
        self.end = None
        self.ok = False
        self.err = None

    def __repr__(self):
        return "%s %s by w%d [%.3f, %.3f] %s %s" % (
            self.kind, (self.digest or "")[:12], self.writer, self.start, self.end or -1,
            "ok" if self.ok else "failed", self.err or "")


def error_code(e):
    if isinstance(e, ClientError):
        return e.response.get("Error", {}).get("Code")
    return repr(e)


def read(s3, key):
    """(sha256, length) of key's body, or None if absent."""
    try:
        r = s3.get_object(Bucket=B, Key=key)
    except ClientError as e:
        if error_code(e) == "NoSuchKey":
            return None
        raise
    body = r["Body"].read()
    check(len(body) == r["ContentLength"], "GET %s: %d bytes, Content-Length %d" % (
        key, len(body), r["ContentLength"]))
    return sha256(body), len(body), r["ETag"], hashlib.md5(body).hexdigest()


def test():
    with Cluster(dnodes=6, ec="4+2", cnodes=2) as c:
        clients = [c.boto3_client(i, max_pool_connections=4) for i in range(2)]
        clients[0].create_bucket(Bucket=B)
        written = {k: set() for k in KEYS}   # every body ever sent for a key (sha256)
        ops = {k: [] for k in KEYS}
        lock = threading.Lock()
        bad = []
        counts = {"put": 0, "delete": 0, "conflict": 0, "reads": 0, "absent": 0}
        stop = threading.Event()

        def writer(w):
            s3 = clients[w]
            rnd = random.Random(1000 + w)
            seq = 0
            while not stop.is_set():
                key = rnd.choice(KEYS)
                if rnd.random() < 0.25:
                    op = Op(key, "delete", None, w)
                    with lock:
                        ops[key].append(op)
                    call = lambda: s3.delete_object(Bucket=B, Key=key)  # noqa: E731
                else:
                    seq += 1
                    body = (b"w%d-%d-" % (w, seq)) + rnd.randbytes(rnd.choice(SIZES))
                    op = Op(key, "put", sha256(body), w)
                    with lock:
                        written[key].add(op.digest)
                        ops[key].append(op)
                    call = lambda: s3.put_object(Bucket=B, Key=key, Body=body)  # noqa: E731
                op.start = time.monotonic()
                try:
                    call()
                    op.ok = True
                except Exception as e:  # noqa: BLE001 - every failure is judged below
                    op.err = error_code(e)
                op.end = time.monotonic()
                with lock:
                    if op.ok:
                        counts[op.kind] += 1
                    elif op.err in TOLERATED:
                        counts["conflict"] += 1
                    else:
                        bad.append("%s %s through C-node %d: %s" % (op.kind, key, w, op.err))

        def reader():
            rnd = random.Random(7)
            while not stop.is_set():
                key = rnd.choice(KEYS)
                node = rnd.randrange(2)
                try:
                    got = read(clients[node], key)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        bad.append("GET %s through C-node %d: %s" % (key, node, error_code(e)))
                    continue
                with lock:
                    counts["reads"] += 1
                    if got is None:
                        counts["absent"] += 1
                    elif got[0] not in written[key]:
                        bad.append("GET %s through C-node %d returned a body never written "
                                   "to it (%d bytes)" % (key, node, got[1]))

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        time.sleep(DURATION)
        stop.set()
        for t in threads:
            t.join(300)
            check(not t.is_alive(), "a client thread hangs")
        log("%d puts, %d deletes acknowledged, %d conflicts (409), %d reads (%d absent)" % (
            counts["put"], counts["delete"], counts["conflict"], counts["reads"],
            counts["absent"]))
        check(not bad, "%d failed operations, first ones:\n  %s" % (len(bad),
                                                                    "\n  ".join(bad[:10])))
        total = counts["put"] + counts["delete"] + counts["conflict"]
        check(counts["put"] >= 20 and counts["delete"] >= 5, "too few operations to mean "
              "anything: %s" % counts)
        check(counts["conflict"] * 5 <= total, "more than 20%% of writes refused as "
              "conflicts: %s" % counts)

        # The end state, through both C-nodes.
        present = {}
        for key in KEYS:
            states = [read(s3, key) for s3 in clients]
            check(states[0] == states[1], "C-nodes disagree on %s: %s vs %s" % (
                key, states[0], states[1]))
            st = states[0]
            done = [o for o in ops[key] if o.ok]
            last_ok_start = max((o.start for o in done), default=-1.0)
            # Operations that no acknowledged operation started after: the last one applied
            # must be one of these.
            cands = [o for o in ops[key] if o.end is not None and o.end >= last_ok_start]
            if st is None:
                check(any(o.kind == "delete" for o in cands) or not done,
                      "%s is absent, but no delete could have been the last operation:\n  %s"
                      % (key, "\n  ".join(map(repr, ops[key][-6:]))))
                continue
            digest, length, etag, md5 = st
            check(digest in written[key], "%s holds a body never written to it (%d bytes)" % (
                key, length))
            check(etag == '"%s"' % md5, "%s: ETag %s is not the MD5 of its body" % (key, etag))
            check(any(o.kind == "put" and o.digest == digest for o in cands),
                  "%s holds an older body (%s), not one of the last operations:\n  %s" % (
                      key, digest[:12], "\n  ".join(map(repr, ops[key][-6:]))))
            present[key] = length
        listed = {}
        for page in clients[1].get_paginator("list_objects_v2").paginate(Bucket=B):
            for o in page.get("Contents", []):
                listed[o["Key"]] = o["Size"]
        check(listed == present, "listing %s disagrees with the objects %s" % (listed,
                                                                              present))
        log("end state consistent: %d keys present, %d absent" % (len(present),
                                                                  len(KEYS) - len(present)))


if __name__ == "__main__":
    main(test)
