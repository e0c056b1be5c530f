#!/usr/bin/python3
"""A returning D-node catches up: with D-node 0 down, S3 objects are written and older ones
deleted, so the metadata records (and tombstones) of those changes go to the other members of
their shards.  `cairnctl meta check 0` must then find D-node 0 behind; `cairn-local start
dnode 0 --no-catch-up` brings it back as it was, `cairnctl meta sync 0` runs the catch-up
sweep (cairn-local runs it on every D-node start), after which `meta check` finds it behind on
nothing, and every object written while it was away reads back
while it serves (deleted ones stay deleted), also with two other D-nodes killed."""
import os
import random
import re
import subprocess

from botocore.exceptions import ClientError

from cluster import CAIRNCTL, Cluster, check, log, main

B = "catchup"


def behind(c, i):
    p = subprocess.run([CAIRNCTL, "-c", os.path.join(c.dir, "cluster.env"), "meta", "check",
                        str(i)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=600)
    check(p.returncode == 0, "meta check failed: %s" % p.stdout)
    m = re.search(r"behind on (\d+) records", p.stdout)
    check(m, "meta check said: %s" % p.stdout)
    return int(m.group(1))


def test():
    rnd = random.Random(23)
    with Cluster(dnodes=6, ec="4+2", cnodes=1) as c:
        s3 = c.boto3_client(read_timeout=120)
        s3.create_bucket(Bucket=B)
        before = {"old/%03d" % i: rnd.randbytes(rnd.randrange(1, 8000)) for i in range(20)}
        for k, v in before.items():
            s3.put_object(Bucket=B, Key=k, Body=v)
        check(behind(c, 0) == 0, "D-node 0 behind before anything happened")

        c.kill("dnode", 0)
        during = {"new/%03d" % i: rnd.randbytes(rnd.randrange(1, 8000)) for i in range(60)}
        for k, v in during.items():
            s3.put_object(Bucket=B, Key=k, Body=v)
        deleted = sorted(before)[:10]
        for k in deleted:
            s3.delete_object(Bucket=B, Key=k)
        log("wrote %d objects and deleted %d with D-node 0 down" % (len(during), len(deleted)))

        # Back without the sweep: it is behind on what changed while it was away.
        c.local("start", "dnode", "0", "--no-catch-up")
        n = behind(c, 0)
        check(n > 0, "D-node 0 is not behind after missing %d writes" % len(during))
        log("ok   D-node 0 back without the sweep: behind on %d records" % n)
        p = subprocess.run([CAIRNCTL, "-c", os.path.join(c.dir, "cluster.env"), "meta", "sync",
                            "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600)
        check(p.returncode == 0 and "caught up" in p.stdout, "meta sync: %s" % p.stdout)
        copied = int(re.search(r"(\d+) records copied", p.stdout).group(1))
        # check counts per member copy (a record two members hold counts twice); the sweep
        # counts the copies the node took (the second member's copy is then not newer).
        check(0 < copied <= n, "the sweep copied %d records, behind on %d" % (copied, n))
        log(p.stdout.strip())
        # cairn-local runs the same sweep when it restarts a D-node.
        c.kill("dnode", 0)
        out = c.local("start", "dnode", "0").stdout
        check("caught up" in out, "cairn-local start ran no catch-up: %s" % out)
        n = behind(c, 0)
        check(n == 0, "D-node 0 still behind on %d records after the sweep" % n)
        log("ok   D-node 0 behind on 0 records after the sweep")

        for i in (1, 2):
            c.kill("dnode", i)
        for k, v in during.items():
            got = s3.get_object(Bucket=B, Key=k)["Body"].read()
            check(got == v, "%s written while D-node 0 was down reads back wrong" % k)
        for k in deleted:
            try:
                s3.get_object(Bucket=B, Key=k)
                check(False, "%s deleted while D-node 0 was down is back" % k)
            except ClientError as e:
                check(e.response["Error"]["Code"] == "NoSuchKey", "GET %s: %s" % (k, e))
        log("ok   with D-nodes 1 and 2 killed: %d objects read back, %d deletions hold" % (
            len(during), len(deleted)))


if __name__ == "__main__":
    main(test)
