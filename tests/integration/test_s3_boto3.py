#!/usr/bin/python3
"""S3 through boto3 (Debian's python3-boto3; meson runs this with /usr/bin/python3): objects
with metadata and awkward key names, managed transfers (upload_file/download_file going
multipart and ranged), paginators for list_objects_v2, list_objects and multipart uploads,
copy, delete_objects, the multipart API with upload_part_copy, presigned GET and PUT URLs
fetched with urllib, and bucket life cycle.  Contents compared by SHA-256."""
import hashlib
import os
import random
import tempfile
import time
import urllib.error
import urllib.request

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from cluster import Cluster, check, log, main, sha256
from s3util import file_sha256, multipart_etag, write_random

MiB = 1 << 20
B = "boto"


def code_of(fn, *args, **kw):
    """The S3 error code fn raises, or None if it succeeds."""
    try:
        fn(*args, **kw)
    except ClientError as e:
        return e.response.get("Error", {}).get("Code")
    return None


def test_objects(s3, rnd):
    keys = {
        "plain": rnd.randbytes(1000),
        "empty": b"",
        "dir/sub/nested.bin": rnd.randbytes(6 * MiB + 3),
        "sp ace/and+plus/=eq&amp?q#h": rnd.randbytes(10),
        "unicod\u00e9/\u65e5\u672c\u8a9e/\u00fc.txt": rnd.randbytes(20),
        "tilde~/percent%20/star*(paren)": rnd.randbytes(30),
        "x" * 200 + "/" + "y" * 200: rnd.randbytes(40),
    }
    for k, v in keys.items():
        r = s3.put_object(Bucket=B, Key=k, Body=v, ContentType="application/x-boto",
                          Metadata={"idx": str(len(k)), "note": "hello world"})
        check(r["ETag"] == '"%s"' % hashlib.md5(v).hexdigest(), "ETag of %r: %s" % (k,
                                                                                 r["ETag"]))
    for k, v in keys.items():
        r = s3.get_object(Bucket=B, Key=k)
        got = r["Body"].read()
        check(sha256(got) == sha256(v), "get %r: different bytes" % k)
        check(r["ContentLength"] == len(v) and r["ContentType"] == "application/x-boto",
              "get %r: %s" % (k, {x: r.get(x) for x in ("ContentLength", "ContentType")}))
        meta = {a.lower(): b for a, b in r["Metadata"].items()}
        check(meta == {"idx": str(len(k)), "note": "hello world"}, "metadata of %r: %s" % (
            k, r["Metadata"]))
        h = s3.head_object(Bucket=B, Key=k)
        check(h["ContentLength"] == len(v) and h["ETag"] == r["ETag"], "head %r: %s" % (k, h))
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=B).get("Contents", [])]
    check(listed == sorted(keys, key=lambda x: x.encode()), "listing of odd keys: %s" % listed)
    r = s3.get_object(Bucket=B, Key="dir/sub/nested.bin", Range="bytes=4194300-4194310")
    check(r["Body"].read() == keys["dir/sub/nested.bin"][4194300:4194311] and
          r["ContentRange"] == "bytes 4194300-4194310/%d" % len(keys["dir/sub/nested.bin"]),
          "range across a stripe boundary: %s" % r.get("ContentRange"))
    check(code_of(s3.get_object, Bucket=B, Key="missing") == "NoSuchKey", "get missing key")
    check(code_of(s3.head_object, Bucket=B, Key="missing") == "404", "head missing key")
    log("boto3 objects with odd keys, metadata and ranges as expected")
    return keys


def test_transfers(s3, work):
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                         max_concurrency=4)
    for name, size in (("t-small", 100000), ("t-multi", 23 * MiB + 1)):
        src = os.path.join(work, name)
        digest = write_random(src, size)
        s3.upload_file(src, B, "xfer/" + name, Config=cfg)
        h = s3.head_object(Bucket=B, Key="xfer/" + name)
        check(h["ContentLength"] == size, "upload_file %s size %s" % (name, h))
        if size > 5 * MiB:
            with open(src, "rb") as f:
                data = f.read()
            want = multipart_etag([data[i:i + 5 * MiB] for i in range(0, size, 5 * MiB)])
            check(h["ETag"] == want, "multipart ETag %s, want %s" % (h["ETag"], want))
        dst = os.path.join(work, name + ".down")
        s3.download_file(B, "xfer/" + name, dst, Config=cfg)  # ranged GETs for the big one
        check(file_sha256(dst) == digest, "download_file %s differs" % name)
    log("upload_file/download_file (multipart, ranged) as expected")


def test_paginators(s3):
    want = sorted("pg/%03d" % i for i in range(23)) + ["pg/sub%d/x" % i for i in range(5)]
    want.sort()
    for k in want:
        s3.put_object(Bucket=B, Key=k, Body=k.encode())
    pag = s3.get_paginator("list_objects_v2")
    pages = list(pag.paginate(Bucket=B, Prefix="pg/", PaginationConfig={"PageSize": 4}))
    got = [o["Key"] for p in pages for o in p.get("Contents", [])]
    check(got == want, "list_objects_v2 paginator: %s" % got)
    check(len(pages) == (len(want) + 3) // 4 and all(p["KeyCount"] <= 4 for p in pages),
          "%d pages of at most 4" % len(pages))
    pages = list(pag.paginate(Bucket=B, Prefix="pg/", Delimiter="/",
                              PaginationConfig={"PageSize": 5}))
    got = [o["Key"] for p in pages for o in p.get("Contents", [])]
    cps = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
    check(got == sorted("pg/%03d" % i for i in range(23)) and
          cps == ["pg/sub%d/" % i for i in range(5)], "paged delimiter listing %s %s" % (got,
                                                                                        cps))
    pag1 = s3.get_paginator("list_objects")
    got = [o["Key"] for p in pag1.paginate(Bucket=B, Prefix="pg/",
                                           PaginationConfig={"PageSize": 6})
           for o in p.get("Contents", [])]
    check(got == want, "list_objects (v1) paginator: %s" % got)
    got = [o["Key"] for p in pag.paginate(Bucket=B, Prefix="pg/", StartAfter="pg/010",
                                          PaginationConfig={"PageSize": 3})
           for o in p.get("Contents", [])]
    check(got == [k for k in want if k > "pg/010"], "StartAfter with pages: %s" % got)
    ids = []
    for i in range(7):
        ids.append((("mpu/%d" % (i % 3)), s3.create_multipart_upload(
            Bucket=B, Key="mpu/%d" % (i % 3))["UploadId"]))
    mpag = s3.get_paginator("list_multipart_uploads")
    got = [(u["Key"], u["UploadId"]) for p in mpag.paginate(
        Bucket=B, Prefix="mpu/", PaginationConfig={"PageSize": 2}) for u in p.get("Uploads", [])]
    check(sorted(got) == sorted(ids) and len(got) == len(ids),
          "list_multipart_uploads paginator: %d of %d uploads" % (len(got), len(ids)))
    check([k for k, _ in got] == sorted(k for k, _ in ids), "uploads sorted by key")
    for k, u in ids:
        s3.abort_multipart_upload(Bucket=B, Key=k, UploadId=u)
    check(not s3.list_multipart_uploads(Bucket=B, Prefix="mpu/").get("Uploads"),
          "uploads left after abort")
    r = s3.delete_objects(Bucket=B, Delete={"Objects": [{"Key": k} for k in want]})
    check(len(r.get("Deleted", [])) == len(want) and not r.get("Errors"),
          "delete_objects: %s" % r.get("Errors"))
    check(not s3.list_objects_v2(Bucket=B, Prefix="pg/").get("Contents"),
          "keys left after delete_objects")
    log("paginators (v2, v1, multipart uploads) and delete_objects as expected")


def test_multipart_api(s3, rnd):
    key = "mp/boto"
    uid = s3.create_multipart_upload(Bucket=B, Key=key, Metadata={"m": "1"})["UploadId"]
    parts = [rnd.randbytes(5 * MiB + i) for i in range(3)] + [rnd.randbytes(777)]
    etags = []
    for n, d in enumerate(parts, 1):
        etags.append(s3.upload_part(Bucket=B, Key=key, UploadId=uid, PartNumber=n,
                                    Body=d)["ETag"])
    # upload_part_copy: part 5 is a range of an existing object.
    src = s3.get_object(Bucket=B, Key="dir/sub/nested.bin")["Body"].read()
    r = s3.upload_part_copy(Bucket=B, Key=key, UploadId=uid, PartNumber=5,
                            CopySource={"Bucket": B, "Key": "dir/sub/nested.bin"},
                            CopySourceRange="bytes=1000-1999")
    etags.append(r["CopyPartResult"]["ETag"])
    check(etags[-1] == '"%s"' % hashlib.md5(src[1000:2000]).hexdigest(),
          "upload_part_copy ETag %s" % etags[-1])
    lp = s3.list_parts(Bucket=B, Key=key, UploadId=uid)
    check([(p["PartNumber"], p["Size"]) for p in lp["Parts"]] ==
          [(n, len(d)) for n, d in enumerate(parts, 1)] + [(5, 1000)], "list_parts %s" % lp)
    # Part 4 is small but not last once part 5 counts: complete with 1..3 and 5 only.
    r = s3.complete_multipart_upload(
        Bucket=B, Key=key, UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n - 1]}
                                   for n in (1, 2, 3, 5)]})
    want = parts[0] + parts[1] + parts[2] + src[1000:2000]
    check(r["ETag"] == multipart_etag([parts[0], parts[1], parts[2], src[1000:2000]]),
          "complete ETag %s" % r["ETag"])
    got = s3.get_object(Bucket=B, Key=key)
    data = got["Body"].read()
    check(sha256(data) == sha256(want), "multipart object differs")
    check({k.lower(): v for k, v in got["Metadata"].items()} == {"m": "1"},
          "metadata set at create: %s" % got["Metadata"])

    r = s3.copy_object(Bucket=B, Key="mp/boto-copy", CopySource={"Bucket": B, "Key": key})
    got = s3.get_object(Bucket=B, Key="mp/boto-copy")["Body"].read()
    check(sha256(got) == sha256(want), "copy of a multipart object differs")
    log("multipart API with upload_part_copy and copy_object as expected")


def test_presigned(c, s3, rnd):
    data = rnd.randbytes(2 * MiB + 1)
    s3.put_object(Bucket=B, Key="pre/get.bin", Body=data)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "pre/get.bin"},
                                    ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=60) as r:
        got = r.read()
        check(r.status == 200, "presigned GET status %d" % r.status)
    check(sha256(got) == sha256(data), "presigned GET returned different bytes")
    req = urllib.request.Request(url, headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(req, timeout=60) as r:
        check(r.status == 206 and r.read() == data[10:20], "presigned ranged GET")
    # A presigned URL for an odd key.
    odd = "pre/sp ace+plus/\u00fc=?.bin"
    s3.put_object(Bucket=B, Key=odd, Body=b"odd")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": B, "Key": odd},
                                    ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=60) as r:
        check(r.read() == b"odd", "presigned GET of an odd key")
    # Presigned PUT.
    body = rnd.randbytes(300000)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": B, "Key": "pre/put.bin"},
                                    ExpiresIn=300)
    req = urllib.request.Request(url, data=body, method="PUT")
    with urllib.request.urlopen(req, timeout=60) as r:
        check(r.status == 200, "presigned PUT status %d" % r.status)
    got = s3.get_object(Bucket=B, Key="pre/put.bin")["Body"].read()
    check(sha256(got) == sha256(body), "object put by a presigned URL differs")
    # Presigned GET of a missing key: 404 NoSuchKey, not an auth error.
    url = s3.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "pre/none"},
                                    ExpiresIn=60)
    try:
        urllib.request.urlopen(url, timeout=60)
        check(False, "presigned GET of a missing key succeeded")
    except urllib.error.HTTPError as e:
        body = e.read()
        check(e.code == 404 and b"<Code>NoSuchKey</Code>" in body,
              "presigned GET of a missing key: %d %r" % (e.code, body[:300]))
    log("presigned GET/PUT URLs as expected")


def test_empty_then_body(c):
    """An empty PUT with "Expect: 100-continue" (boto3 sends it on every PutObject), then a
    PUT with a body on the same keep-alive connection.  botocore misreads the second
    response when the server answered the first without a "100 Continue"
    (boto/botocore#3755) and waits for its read timeout: S3 sends the 100 first, and a
    server that wants boto3 and awscli (`aws s3 sync` of a tree with empty files) to work
    must too."""
    s3 = c.boto3_client(empty_expect=True, read_timeout=15, max_pool_connections=1)
    for i in range(3):
        s3.put_object(Bucket=B, Key="expect/empty%d" % i, Body=b"")
        t0 = time.monotonic()
        try:
            s3.put_object(Bucket=B, Key="expect/body%d" % i, Body=b"x" * (2 * MiB))
            err = None
        except Exception as e:  # noqa: BLE001
            err = repr(e)
        took = time.monotonic() - t0
        check(err is None and took < 5, "PUT with a body after an empty PUT on one "
              "connection: %.1f s, %s (answer Expect: 100-continue with 100 Continue even "
              "when Content-Length is 0)" % (took, err or "ok"))
    log("empty PUT then PUT with a body on one connection: fast")


def test_buckets(s3):
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    check(B in names, "list_buckets: %s" % names)
    s3.create_bucket(Bucket="boto-two")
    s3.put_object(Bucket="boto-two", Key="k", Body=b"two")
    check(code_of(s3.delete_bucket, Bucket="boto-two") == "BucketNotEmpty", "BucketNotEmpty")
    s3.delete_object(Bucket="boto-two", Key="k")
    s3.delete_bucket(Bucket="boto-two")
    check(code_of(s3.head_bucket, Bucket="boto-two") == "404", "deleted bucket gone")
    check(code_of(s3.put_object, Bucket="boto-two", Key="k", Body=b"x") == "NoSuchBucket",
          "put into a deleted bucket")
    log("buckets as expected")


def test_dir_markers(c, s3):
    """A key ending in '/' is an explicit directory: it reads back as an empty object, more
    than once (reading one used to crash the C-node after the answer)."""
    s3.put_object(Bucket=B, Key="marker/", Body=b"")
    s3.put_object(Bucket=B, Key="marker/inside", Body=b"in")
    for _ in range(3):
        got = s3.get_object(Bucket=B, Key="marker/")
        check(got["Body"].read() == b"" and got["ContentLength"] == 0,
              "GET of a directory marker: %r" % got)
        head = s3.head_object(Bucket=B, Key="marker/")
        check(head["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"',
              "HEAD of a directory marker: %r" % head["ETag"])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=B, Prefix="marker/")["Contents"]]
    check(keys == ["marker/", "marker/inside"], "marker listing: %s" % keys)
    check("running" in [l for l in c.local("status").stdout.splitlines()
                        if l.startswith("cnode 0")][0], "the C-node died serving a marker")
    log("directory markers as expected")


def test_delete_bucket_after_many_deletes(s3):
    """Deleting a bucket right after deleting more keys than one metadata scan page (256)
    under one prefix: the scan must step over the page of deleted entries (it once rescanned
    it forever)."""
    b = "many-deleted"
    s3.create_bucket(Bucket=b)
    keys = ["d/k%04d" % i for i in range(300)]
    for k in keys:
        s3.put_object(Bucket=b, Key=k, Body=b"x")
    for i in range(0, len(keys), 100):
        s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k} for k in keys[i:i + 100]]})
    check(s3.list_objects_v2(Bucket=b).get("KeyCount") == 0, "keys left after delete")
    s3.delete_bucket(Bucket=b)
    names = [x["Name"] for x in s3.list_buckets()["Buckets"]]
    check(b not in names, "bucket still listed after DeleteBucket")
    log("ok   DeleteBucket after 300 deletes under one prefix")


def test():
    rnd = random.Random(9)
    with Cluster(dnodes=6, ec="4+2", cnodes=1) as c:
        s3 = c.boto3_client()
        s3.create_bucket(Bucket=B)
        work = tempfile.mkdtemp(dir=c.dir, prefix="work-")
        test_objects(s3, rnd)
        test_transfers(s3, work)
        test_paginators(s3)
        test_multipart_api(s3, rnd)
        test_presigned(c, s3, rnd)
        test_buckets(s3)
        test_dir_markers(c, s3)
        test_empty_then_body(c)
        test_delete_bucket_after_many_deletes(c.boto3_client(read_timeout=60))


if __name__ == "__main__":
    main(test)
