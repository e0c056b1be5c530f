#!/usr/bin/python3
"""One namespace (invariant 6) and stateless handles (invariant 1) across protocols and
C-nodes: an object PUT over S3 reads identically over NFS from both C-nodes; a file written
over NFS reads identically over S3 from both; a directory made over NFS shows as a common
prefix in an S3 listing; a file written through one C-node verifies through the other; two
clients write disjoint halves of one file through different C-nodes and both halves land;
writes buffered on one C-node never land over newer bytes committed through another."""
import hashlib
import os
import random

from cluster import Cluster, check, log, main

MiB = 1 << 20
B = "shared"


def test():
    rnd = random.Random(11)
    with Cluster(dnodes=6, ec="4+2", cnodes=2) as c:
        c.aws_ok("s3", "mb", "s3://" + B)
        sizes = [0, 1, 4095, 4096, 16 * 1024 + 1, MiB + 1, 9 * MiB + 7]

        # S3 -> NFS, through both C-nodes.
        for i, n in enumerate(sizes):
            data = rnd.randbytes(n)
            src = os.path.join(c.dir, "s3in")
            with open(src, "wb") as f:
                f.write(data)
            c.aws_ok("s3", "cp", src, "s3://%s/from-s3/obj%d" % (B, i), node=i % 2)
            for node in (0, 1):
                dst = os.path.join(c.dir, "nfsout")
                c.nfs_cp(c.nfs_url("/%s/from-s3/obj%d" % (B, i), node), dst)
                with open(dst, "rb") as f:
                    got = f.read()
                check(got == data, "S3 object of %d bytes reads back over NFS (C-node %d) "
                      "as %d different bytes" % (n, node, len(got)))
        log("ok   %d S3 objects read identically over NFS through both C-nodes" % len(sizes))

        # NFS -> S3, through both C-nodes, in a directory made over NFS.
        c.nfscheck("mkdir", c.nfs_url("/"), "%s/from-nfs" % B)
        c.nfscheck("mkdir", c.nfs_url("/"), "%s/from-nfs/sub" % B)
        written = {}
        for i, n in enumerate(sizes):
            data = rnd.randbytes(n)
            src = os.path.join(c.dir, "nfsin")
            with open(src, "wb") as f:
                f.write(data)
            c.nfs_cp(src, c.nfs_url("/%s/from-nfs/file%d" % (B, i), i % 2))
            written["from-nfs/file%d" % i] = data
        for key, data in written.items():
            for node in (0, 1):
                dst = os.path.join(c.dir, "s3out")
                c.aws_ok("s3", "cp", "s3://%s/%s" % (B, key), dst, node=node)
                with open(dst, "rb") as f:
                    got = f.read()
                check(hashlib.sha256(got).digest() == hashlib.sha256(data).digest(),
                      "%s written over NFS reads back over S3 (C-node %d) changed" % (key, node))
        log("ok   %d NFS files read identically over S3 through both C-nodes" % len(written))

        # Listings: the NFS directory is a common prefix, the files are keys with their sizes.
        out = c.aws_ok("s3api", "list-objects-v2", "--bucket", B, "--prefix", "from-nfs/",
                       "--delimiter", "/")
        prefixes = [p["Prefix"] for p in out.get("CommonPrefixes", [])]
        check(prefixes == ["from-nfs/sub/"], "common prefixes %r" % prefixes)
        keys = {o["Key"]: o["Size"] for o in out.get("Contents", [])}
        # A directory made over NFS is explicit, like an S3 "folder": its own marker key
        # "from-nfs/" is listed under its prefix, as S3 lists a folder object.
        want = {k: len(v) for k, v in written.items()}
        want["from-nfs/"] = 0
        check(keys == want, "keys %r, want %r" % (keys, want))
        log("ok   NFS directory is a common prefix; NFS files listed with their sizes")

        # Handles and data across C-nodes.
        for n in (1, 4096, 3 * MiB + 5):
            c.nfscheck("write", c.nfs_url("/"), "%s/x-%d" % (B, n), n, 1234 + n)
            c.nfscheck("verify", c.nfs_url("/", 1), "%s/x-%d" % (B, n), n, 1234 + n)
        log("ok   written through C-node 0, verified through C-node 1")

        c.nfscheck("disjoint", c.nfs_url("/"), c.nfs_url("/", 1), "%s/checkpoint" % B, 64,
                   timeout=900)
        dst = os.path.join(c.dir, "ckpt")
        c.aws_ok("s3", "cp", "s3://%s/checkpoint" % B, dst)
        check(os.path.getsize(dst) == 64 * MiB, "checkpoint over S3 is %d bytes" %
              os.path.getsize(dst))
        log("ok   two writers through two C-nodes: 64 MiB checkpoint whole, also over S3")

        # Buffered writes keep their order against commits made through another C-node: a
        # small (inline) file and a large one.
        for n in (5000, 3 * MiB + 5):
            c.nfscheck("order", c.nfs_url("/"), c.nfs_url("/", 1), "%s/order-%d" % (B, n), n)
        log("ok   buffered writes never land over newer bytes committed through another C-node")


if __name__ == "__main__":
    main(test)
