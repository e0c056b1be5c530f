#!/usr/bin/python3
"""Every NFSv3 procedure through libnfs (nfscheck), with its error cases: NOENT, EXIST,
NOTDIR, ISDIR, NOTEMPTY, STALE, BADHANDLE, ACCES, ROFS, NAMETOOLONG, NOT_SYNC; files of 0, 1,
4095, 4096, 1 MiB + 1 and 64 MiB compared byte for byte; a 10,000-entry directory listed
completely with paging; root squash and permission checks; a read-only export; an export
whose allow-list leaves this client out."""
import os

from cluster import Cluster, log, main

EXPORTS = "/ *(rw) ; /robkt *(ro) ; /nobody 10.255.255.1(rw)"


def test():
    with Cluster(dnodes=6, ec="4+2", cnodes=1, nfs_exports=EXPORTS) as c:
        c.aws_ok("s3", "mb", "s3://robkt")
        c.aws_ok("s3", "mb", "s3://nobody")
        src = os.path.join(c.dir, "ro-file")
        with open(src, "wb") as f:
            f.write(b"read-only export\n" * 100)
        c.aws_ok("s3", "cp", src, "s3://robkt/file")

        out = c.nfscheck("procs", c.nfs_url("/"), "procs").stdout
        log("procs: %d checks passed" % out.count("\nok") if out else 0)
        c.nfscheck("sizes", c.nfs_url("/"), "sizes", timeout=900)
        log("ok   sizes")
        c.nfscheck("squash", c.nfs_url("/"), "squash")
        log("ok   squash")
        c.nfscheck("rofs", c.nfs_url("/robkt"), "file")
        log("ok   read-only export")
        c.nfscheck("denied", c.nfs_url("/nobody"))
        log("ok   allow-list")
        c.nfscheck("bigdir", c.nfs_url("/"), "bigdir", int(os.environ.get("NFS_BIGDIR", 10000)), timeout=1200)
        log("ok   10,000 entries")


if __name__ == "__main__":
    main(test)
