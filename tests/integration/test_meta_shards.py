#!/usr/bin/python3
"""Metadata shards through D-node failures: every shard is a Raft group of 2m + 1 D-nodes.

With D-node 0 killed, S3 objects are written and older ones deleted (their shards' other
members commit the changes without it).  D-node 0 comes back as it was and catches up from
its groups' leaders, with no sweep to run; then two other D-nodes are killed (m = 2), so for
the shards placed on both, D-node 0 is needed for a majority: every object written while it
was away must read back, every deletion must hold, and new writes must still succeed."""
import random

from botocore.exceptions import ClientError

from cluster import Cluster, check, log, main

B = "shards"


def test():
    rnd = random.Random(23)
    with Cluster(dnodes=6, ec="4+2", cnodes=1) as c:
        out = c.ctl("map", "show").stdout.decode()
        check(out.startswith("epoch 1 ") and "replicas 5" in out, "map show: %s" % out)
        log(out.splitlines()[0])
        s3 = c.boto3_client(read_timeout=120)
        s3.create_bucket(Bucket=B)
        before = {"old/%03d" % i: rnd.randbytes(rnd.randrange(1, 8000)) for i in range(20)}
        for k, v in before.items():
            s3.put_object(Bucket=B, Key=k, Body=v)

        c.kill("dnode", 0)
        during = {"new/%03d" % i: rnd.randbytes(rnd.randrange(1, 8000)) for i in range(60)}
        for k, v in during.items():
            s3.put_object(Bucket=B, Key=k, Body=v)
        deleted = sorted(before)[:10]
        for k in deleted:
            s3.delete_object(Bucket=B, Key=k)
        log("wrote %d objects and deleted %d with D-node 0 down" % (len(during), len(deleted)))

        c.start("dnode", 0)
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
        for k, v in before.items():
            if k not in deleted:
                check(s3.get_object(Bucket=B, Key=k)["Body"].read() == v, "%s reads wrong" % k)
        log("ok   D-node 0 back, D-nodes 1 and 2 killed: %d objects read back, %d deletions "
            "hold" % (len(during) + len(before) - len(deleted), len(deleted)))
        after = {"after/%03d" % i: rnd.randbytes(rnd.randrange(1, 8000)) for i in range(20)}
        for k, v in after.items():
            s3.put_object(Bucket=B, Key=k, Body=v)
        for k, v in after.items():
            check(s3.get_object(Bucket=B, Key=k)["Body"].read() == v, "%s reads wrong" % k)
        log("ok   %d new objects written and read with two D-nodes down" % len(after))


if __name__ == "__main__":
    main(test)
