#!/usr/bin/python3
"""C-nodes are stateless (invariant 1): kill -9 a C-node in the middle of single PUTs, of an
overwrite and of a multipart upload.  Every PUT it acknowledged reads back byte-identical
through the other C-node, a PUT cut off by the kill is either absent or whole, the object
being overwritten is the old body or the new one (whole), the multipart upload started on
the dead C-node is listed, continued and completed on the other one (and a second one
aborted there), and the restarted C-node serves all of it again."""
import hashlib
import random
import threading
import time

from botocore.exceptions import ClientError

from cluster import Cluster, check, log, main, sha256

MiB = 1 << 20
B = "stateless"
SIZES = [1, 1000, 65536, 300000, MiB + 3, 4 * MiB, 4 * MiB + 5, 9 * MiB + 7]


def get_or_none(s3, key):
    try:
        return s3.get_object(Bucket=B, Key=key)["Body"].read()
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "NoSuchKey":
            return None
        raise


def test():
    rnd = random.Random(17)
    with Cluster(dnodes=6, ec="4+2", cnodes=2) as c:
        s0 = c.boto3_client(0, connect_timeout=5, read_timeout=60)
        s1 = c.boto3_client(1)
        s0.create_bucket(Bucket=B)

        acked = {}        # key -> sha256 of the body a 200 acknowledged
        maybe = {}        # key -> sha256 of a body whose PUT failed (absent or whole)
        errors = []
        stop = threading.Event()
        killed = threading.Event()

        def putter():
            wr = random.Random(99)
            i = 0
            while not stop.is_set():
                key = "put/%05d" % i
                i += 1
                data = wr.randbytes(wr.choice(SIZES))
                digest = sha256(data)
                try:
                    r = s0.put_object(Bucket=B, Key=key, Body=data)
                except Exception as e:  # noqa: BLE001 - any failure leaves the PUT unknown
                    maybe[key] = digest
                    if not killed.is_set():
                        errors.append("PUT %s failed before the kill: %r" % (key, e))
                    return  # C-node 0 is gone (or broken): stop writing
                if r["ETag"] != '"%s"' % hashlib.md5(data).hexdigest():
                    errors.append("PUT %s: ETag %s is not the body's MD5" % (key, r["ETag"]))
                acked[key] = digest

        t = threading.Thread(target=putter)
        t.start()
        deadline = time.monotonic() + 120
        while len(acked) < 15 and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        check(not errors, "; ".join(errors))
        check(len(acked) >= 15, "only %d PUTs acknowledged before the kill" % len(acked))

        # Two multipart uploads on C-node 0: one to finish elsewhere, one to abort elsewhere.
        mp_key, ab_key = "mp/finish", "mp/abort"
        uid = s0.create_multipart_upload(Bucket=B, Key=mp_key, ContentType="x/mp")["UploadId"]
        ab_uid = s0.create_multipart_upload(Bucket=B, Key=ab_key)["UploadId"]
        parts = {1: rnd.randbytes(5 * MiB), 2: rnd.randbytes(5 * MiB + 4097)}
        etags = {}
        for n, d in parts.items():
            etags[n] = s0.upload_part(Bucket=B, Key=mp_key, UploadId=uid, PartNumber=n,
                                      Body=d)["ETag"]
        s0.upload_part(Bucket=B, Key=ab_key, UploadId=ab_uid, PartNumber=1,
                       Body=rnd.randbytes(MiB))
        cut = rnd.randbytes(64 * MiB)  # part 3, in flight when C-node 0 dies
        cut_result = {}

        def cut_part():
            try:
                cut_result["etag"] = s0.upload_part(Bucket=B, Key=mp_key, UploadId=uid,
                                                    PartNumber=3, Body=cut)["ETag"]
            except Exception as e:  # noqa: BLE001
                cut_result["error"] = repr(e)

        # An object overwritten by a PUT the kill cuts off: the old body or the new one, whole.
        old = rnd.randbytes(5 * MiB + 1)
        s0.put_object(Bucket=B, Key="over/big", Body=old)
        new = rnd.randbytes(64 * MiB)
        over_result = {}

        def cut_over():
            try:
                s0.put_object(Bucket=B, Key="over/big", Body=new)
                over_result["ok"] = True
            except Exception as e:  # noqa: BLE001
                over_result["error"] = repr(e)

        tp = threading.Thread(target=cut_part)
        to = threading.Thread(target=cut_over)
        tp.start()
        to.start()
        time.sleep(0.15)
        check(not errors, "; ".join(errors))
        killed.set()
        c.kill_now("cnode", 0)
        n_before = len(acked)
        log("killed C-node 0 with PUTs and a 64 MiB part in flight (%d PUTs acknowledged)" %
            n_before)
        stop.set()
        t.join(120)
        tp.join(120)
        to.join(120)
        check(not t.is_alive() and not tp.is_alive() and not to.is_alive(),
              "clients hang after the C-node died")
        check(not errors, "; ".join(errors))
        status = c.local("status").stdout
        check("cnode 0" in status and "cnode 1" in status and
              [l for l in status.splitlines() if l.startswith("cnode 0")][0].endswith("stopped"),
              "status after the kill:\n" + status)
        log("part 3 on the dead C-node: %s; PUTs acknowledged %d, cut off %d" % (
            cut_result, len(acked), len(maybe)))

        # Everything acknowledged is readable, whole, through C-node 1.
        for key, digest in sorted(acked.items()):
            got = get_or_none(s1, key)
            check(got is not None, "acknowledged %s missing through C-node 1" % key)
            check(sha256(got) == digest, "acknowledged %s differs through C-node 1 (%d bytes)"
                  % (key, len(got)))
        for key, digest in maybe.items():
            got = get_or_none(s1, key)
            check(got is None or sha256(got) == digest,
                  "cut-off PUT %s is neither absent nor whole (%d bytes)"
                  % (key, -1 if got is None else len(got)))
        got = get_or_none(s1, "over/big")
        check(got is not None and (sha256(got) == sha256(new) or
                                   ("ok" not in over_result and sha256(got) == sha256(old))),
              "object overwritten by a cut-off PUT (%s) is neither the old body nor the new "
              "one: %s" % (over_result, "absent" if got is None else "%d bytes" % len(got)))
        log("overwrite cut off by the kill (%s): %s body whole" % (
            over_result, "new" if sha256(got) == sha256(new) else "old"))
        listed = set()
        for page in s1.get_paginator("list_objects_v2").paginate(Bucket=B, Prefix="put/"):
            listed |= {o["Key"] for o in page.get("Contents", [])}
        check(set(acked) <= listed, "acknowledged keys missing from the listing: %s" %
              sorted(set(acked) - listed))
        check(listed <= set(acked) | set(maybe), "listing has keys never written: %s" %
              sorted(listed - set(acked) - set(maybe)))
        log("all %d acknowledged PUTs read back identical through C-node 1" % len(acked))

        # The multipart upload continues on C-node 1.
        ups = {(u["Key"], u["UploadId"]) for u in
               s1.list_multipart_uploads(Bucket=B).get("Uploads", [])}
        check(ups == {(mp_key, uid), (ab_key, ab_uid)},
              "uploads seen through C-node 1: %s" % ups)
        lp = [(p["PartNumber"], p["Size"], p["ETag"]) for p in
              s1.list_parts(Bucket=B, Key=mp_key, UploadId=uid).get("Parts", [])]
        check(lp[:2] == [(n, len(parts[n]), etags[n]) for n in (1, 2)],
              "parts acknowledged by C-node 0, listed by C-node 1: %s" % lp)
        check(len(lp) == 2 or (len(lp) == 3 and lp[2] == (3, len(cut), '"%s"' %
                                                          hashlib.md5(cut).hexdigest())),
              "the cut-off part 3 is absent or whole: %s" % lp[2:])
        check("etag" not in cut_result or len(lp) == 3, "acknowledged part 3 lost: %s" % lp)
        parts[3] = rnd.randbytes(6 * MiB + 1)
        parts[4] = rnd.randbytes(12345)
        for n in (3, 4):
            etags[n] = s1.upload_part(Bucket=B, Key=mp_key, UploadId=uid, PartNumber=n,
                                      Body=parts[n])["ETag"]
        done = {"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in range(1, 5)]}
        s1.complete_multipart_upload(Bucket=B, Key=mp_key, UploadId=uid, MultipartUpload=done)
        whole = b"".join(parts[n] for n in range(1, 5))
        got = get_or_none(s1, mp_key)
        check(got is not None and sha256(got) == sha256(whole),
              "multipart object completed on C-node 1 differs")
        s1.abort_multipart_upload(Bucket=B, Key=ab_key, UploadId=ab_uid)
        check(not s1.list_multipart_uploads(Bucket=B).get("Uploads"),
              "uploads left after complete and abort on C-node 1")
        check(get_or_none(s1, ab_key) is None, "aborted upload left an object")
        log("multipart upload from C-node 0 completed on C-node 1; the other aborted there")

        # C-node 0 comes back and serves everything.
        c.start("cnode", 0)
        s0 = c.boto3_client(0)
        for key, digest in sorted(acked.items()):
            got = get_or_none(s0, key)
            check(got is not None and sha256(got) == digest,
                  "acknowledged %s wrong through the restarted C-node 0" % key)
        got = get_or_none(s0, mp_key)
        check(got is not None and sha256(got) == sha256(whole),
              "multipart object wrong through the restarted C-node 0")
        got0, got1 = get_or_none(s0, "over/big"), get_or_none(s1, "over/big")
        check(got0 is not None and got1 is not None and sha256(got0) == sha256(got1),
              "over/big differs between the C-nodes after the restart")
        data = rnd.randbytes(3 * MiB)
        s0.put_object(Bucket=B, Key="after/restart", Body=data)
        got = get_or_none(s1, "after/restart")
        check(got is not None and sha256(got) == sha256(data),
              "a PUT through the restarted C-node 0 reads back through C-node 1")
        log("restarted C-node 0 serves all %d objects and takes new writes" % (len(acked) + 1))


if __name__ == "__main__":
    main(test)
