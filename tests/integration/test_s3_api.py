#!/usr/bin/python3
"""S3 operations one by one through awscli `s3api`: put/get/head with user metadata and
content type, ranged gets, list-objects-v2 with prefix, delimiter, max-keys, continuation and
start-after, delete-objects, copy-object (COPY and REPLACE metadata), multipart uploads
(create, upload-part including a replaced part, list-parts, list-multipart-uploads,
complete with all or some parts, abort, a too-small part) and the errors S3 names for
missing keys, buckets and uploads.  Contents compared by SHA-256."""
import hashlib
import json
import os
import random
import tempfile

from cluster import Cluster, check, clip, log, main, sha256
from s3util import multipart_etag

MiB = 1 << 20
B = "api"


def err_code(p):
    """The S3 error code awscli reports ("An error occurred (Code) when calling ...")."""
    text = p.stderr.decode(errors="replace")
    if "An error occurred (" in text:
        return text.split("An error occurred (", 1)[1].split(")", 1)[0]
    return text.strip()


class Api:
    def __init__(self, c, work):
        self.c = c
        self.work = work
        self.n = 0

    def tmp(self, data):
        self.n += 1
        path = os.path.join(self.work, "f%d" % self.n)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def ok(self, *args):
        return self.c.aws_ok("s3api", *args)

    def fails(self, code, *args):
        p = self.c.aws("s3api", *args)
        got = err_code(p)
        check(p.returncode != 0 and got == code, "s3api %s: want error %s, got rc %d %s %s" % (
            " ".join(args), code, p.returncode, clip(got), clip(p.stdout)))

    def put(self, key, data, *extra):
        return self.ok("put-object", "--bucket", B, "--key", key, "--body", self.tmp(data),
                       *extra)

    def get(self, key, *extra, bucket=B):
        out = os.path.join(self.work, "get-out")
        if os.path.exists(out):
            os.unlink(out)
        meta = self.ok("get-object", "--bucket", bucket, "--key", key, *extra, out)
        with open(out, "rb") as f:
            return meta, f.read()

    def keys(self, **kw):
        """One ListObjectsV2 call (awscli's own pagination would drop KeyCount)."""
        args = ["list-objects-v2", "--bucket", B, "--no-paginate"]
        for k, v in kw.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        return self.ok(*args)


def lower_keys(d):
    return {k.lower(): v for k, v in (d or {}).items()}


def test_objects(a, rnd):
    data = rnd.randbytes(9 * MiB + 17)  # three 4+2 stripes of 4 MiB, the last one short
    r = a.put("obj/meta.bin", data, "--content-type", "application/x-cairn-test",
              "--metadata", "color=blue,Answer=42", "--cache-control", "no-cache")
    check(r.get("ETag") == '"%s"' % hashlib.md5(data).hexdigest(), "put ETag %s" % r)
    meta, got = a.get("obj/meta.bin")
    check(sha256(got) == sha256(data), "get-object returned different bytes")
    check(meta.get("ContentLength") == len(data), "get ContentLength %s" % meta)
    check(meta.get("ContentType") == "application/x-cairn-test", "ContentType %s" % meta)
    check(lower_keys(meta.get("Metadata")) == {"color": "blue", "answer": "42"},
          "user metadata round trip: %s" % meta.get("Metadata"))
    check(meta.get("ETag") == r["ETag"], "get ETag %s, put said %s" % (meta.get("ETag"),
                                                                       r["ETag"]))
    h = a.ok("head-object", "--bucket", B, "--key", "obj/meta.bin")
    check(h.get("ContentLength") == len(data) and h.get("ETag") == r["ETag"] and
          lower_keys(h.get("Metadata")) == {"color": "blue", "answer": "42"} and
          h.get("ContentType") == "application/x-cairn-test", "head-object: %s" % h)
    check("LastModified" in h, "head-object has LastModified: %s" % h)

    # Ranged gets: middle, across fragment and stripe boundaries (1 MiB fragments, 4 MiB of
    # data per 4+2 stripe), suffix, open-ended, and running past the end.
    n = len(data)
    for rng, lo, hi in (("bytes=100-199", 100, 199),
                        ("bytes=%d-%d" % (MiB - 10, MiB + 10), MiB - 10, MiB + 10),
                        ("bytes=%d-%d" % (4 * MiB - 10, 8 * MiB + 10), 4 * MiB - 10,
                         8 * MiB + 10),
                        ("bytes=0-0", 0, 0),
                        ("bytes=-50", n - 50, n - 1),
                        ("bytes=%d-" % (n - 1000), n - 1000, n - 1),
                        ("bytes=%d-%d" % (n - 10, n + 1000), n - 10, n - 1)):
        meta, got = a.get("obj/meta.bin", "--range", rng)
        check(got == data[lo:hi + 1], "range %s returned wrong bytes (%d bytes)" % (rng,
                                                                                    len(got)))
        check(meta.get("ContentRange") == "bytes %d-%d/%d" % (lo, hi, len(data)),
              "range %s: ContentRange %s" % (rng, meta.get("ContentRange")))
        check(meta.get("ContentLength") == hi - lo + 1, "range %s: ContentLength %s" % (
            rng, meta.get("ContentLength")))
    p = a.c.aws("s3api", "get-object", "--bucket", B, "--key", "obj/meta.bin", "--range",
                "bytes=%d-" % (len(data) + 5), os.path.join(a.work, "nothing"))
    check(p.returncode != 0 and err_code(p) == "InvalidRange",
          "range past the end: rc %d %s" % (p.returncode, err_code(p)))

    # Empty object, overwrite, delete.
    a.put("obj/empty", b"")
    meta, got = a.get("obj/empty")
    check(got == b"" and meta.get("ContentLength") == 0 and
          meta.get("ETag") == '"d41d8cd98f00b204e9800998ecf8427e"', "empty object: %s" % meta)
    a.put("obj/over", b"first version")
    a.put("obj/over", b"second")
    check(a.get("obj/over")[1] == b"second", "overwrite reads the new body")
    a.ok("delete-object", "--bucket", B, "--key", "obj/over")
    a.fails("NoSuchKey", "get-object", "--bucket", B, "--key", "obj/over",
            os.path.join(a.work, "x"))
    a.fails("404", "head-object", "--bucket", B, "--key", "obj/over")
    a.ok("delete-object", "--bucket", B, "--key", "obj/never-existed")  # S3: 204 anyway
    a.fails("NoSuchBucket", "get-object", "--bucket", "no-such-bucket", "--key", "k",
            os.path.join(a.work, "x"))
    a.fails("NoSuchBucket", "list-objects-v2", "--bucket", "no-such-bucket")
    log("put/get/head, metadata, content type, ranges, overwrite, delete as expected")


def test_copy(a, rnd):
    data = rnd.randbytes(9 * MiB + 5)  # several stripes
    a.put("copy/src", data, "--content-type", "text/x-src", "--metadata", "origin=src")
    r = a.ok("copy-object", "--bucket", B, "--key", "copy/dst", "--copy-source", B +
             "/copy/src")
    check(r.get("CopyObjectResult", {}).get("ETag") == '"%s"' % hashlib.md5(data).hexdigest(),
          "copy-object result: %s" % r)
    meta, got = a.get("copy/dst")
    check(sha256(got) == sha256(data), "copy has different bytes")
    check(lower_keys(meta.get("Metadata")) == {"origin": "src"} and
          meta.get("ContentType") == "text/x-src",
          "metadata directive COPY keeps metadata: %s" % meta)
    a.ok("copy-object", "--bucket", B, "--key", "copy/dst2", "--copy-source", B + "/copy/src",
         "--metadata-directive", "REPLACE", "--metadata", "origin=replaced",
         "--content-type", "text/x-new")
    meta, got = a.get("copy/dst2")
    check(sha256(got) == sha256(data), "copy (REPLACE) has different bytes")
    check(lower_keys(meta.get("Metadata")) == {"origin": "replaced"} and
          meta.get("ContentType") == "text/x-new", "REPLACE metadata: %s" % meta)
    # The source is untouched; overwriting the source does not change the copy.
    a.put("copy/src", b"new source")
    check(sha256(a.get("copy/dst")[1]) == sha256(data), "copy changed with its source")
    a.fails("NoSuchKey", "copy-object", "--bucket", B, "--key", "copy/x", "--copy-source",
            B + "/copy/missing")
    log("copy-object as expected")


def test_list(a):
    keys = sorted(["lst/a/1", "lst/a/2", "lst/a/b/3", "lst/b/1", "lst/c", "lst/d", "lst/e.txt",
                   "lst/f", "lst/g/h/i/j", "lst/z", "lstx", "lst/0", "lst/a-b", "lst/a.b"])
    for k in keys:
        a.put(k, k.encode())
    r = a.keys(prefix="lst/")
    got = [o["Key"] for o in r.get("Contents", [])]
    check(got == sorted(k for k in keys if k.startswith("lst/")),
          "list prefix lst/: %s" % got)
    check(r.get("KeyCount") == len(got) and not r.get("IsTruncated"),
          "KeyCount/IsTruncated: %s" % {k: v for k, v in r.items() if k != "Contents"})
    for o in r["Contents"]:
        check(o["Size"] == len(o["Key"]) and o["ETag"] == '"%s"' % hashlib.md5(
            o["Key"].encode()).hexdigest(), "list entry %s" % o)

    r = a.keys(prefix="lst/", delimiter="/")
    got = [o["Key"] for o in r.get("Contents", [])]
    cps = [p["Prefix"] for p in r.get("CommonPrefixes", [])]
    check(got == ["lst/0", "lst/a-b", "lst/a.b", "lst/c", "lst/d", "lst/e.txt", "lst/f",
                  "lst/z"], "delimiter listing keys: %s" % got)
    check(cps == ["lst/a/", "lst/b/", "lst/g/"], "delimiter listing prefixes: %s" % cps)
    r = a.keys(prefix="lst/a", delimiter="/")
    check([o["Key"] for o in r.get("Contents", [])] == ["lst/a-b", "lst/a.b"] and
          [p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["lst/a/"],
          "prefix lst/a delimiter /: %s" % r)
    r = a.keys(prefix="lst/a/", delimiter="/")
    check([o["Key"] for o in r.get("Contents", [])] == ["lst/a/1", "lst/a/2"] and
          [p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["lst/a/b/"],
          "prefix lst/a/ delimiter /: %s" % r)
    r = a.keys(delimiter="/")
    check([o["Key"] for o in r.get("Contents", [])] == ["lstx"] and
          "lst/" in [p["Prefix"] for p in r.get("CommonPrefixes", [])],
          "root listing with delimiter: %s" % r)

    # Pages of max-keys, by hand (--no-paginate) with continuation tokens.
    def pages(**kw):
        out, cps_all, token, n = [], [], None, 0
        while True:
            extra = dict(kw)
            if token:
                extra["continuation_token"] = token
            r = a.ok(*(["list-objects-v2", "--bucket", B, "--no-paginate"] +
                       sum((["--" + k.replace("_", "-"), str(v)] for k, v in extra.items()),
                           [])))
            page = [o["Key"] for o in r.get("Contents", [])]
            pcp = [p["Prefix"] for p in r.get("CommonPrefixes", [])]
            check(len(page) + len(pcp) <= kw["max_keys"], "page larger than max-keys: %s" % r)
            check(r.get("KeyCount") == len(page) + len(pcp), "KeyCount of a page: %s" % r)
            out += page
            cps_all += pcp
            n += 1
            check(n < 100, "listing does not end")
            if not r.get("IsTruncated"):
                check(not r.get("NextContinuationToken"), "token on the last page")
                return out, cps_all, n
            token = r.get("NextContinuationToken")
            check(token, "IsTruncated without NextContinuationToken: %s" % r)

    want = sorted(k for k in keys if k.startswith("lst/"))
    got, _, n = pages(prefix="lst/", max_keys=3)
    check(got == want and n == (len(want) + 2) // 3, "max-keys 3 pages: %s in %d pages" % (
        got, n))
    got, cps, n = pages(prefix="lst/", delimiter="/", max_keys=2)
    check(got == ["lst/0", "lst/a-b", "lst/a.b", "lst/c", "lst/d", "lst/e.txt", "lst/f",
                  "lst/z"] and cps == ["lst/a/", "lst/b/", "lst/g/"],
          "paged delimiter listing: %s %s" % (got, cps))
    got, _, _ = pages(prefix="lst", max_keys=1)
    check(got == keys, "all lst* keys in pages of 1: %s" % got)
    r = a.keys(prefix="lst/", start_after="lst/d")
    check([o["Key"] for o in r.get("Contents", [])] == [k for k in want if k > "lst/d"],
          "start-after: %s" % r)
    r = a.keys(prefix="nothing/")
    check(not r.get("Contents") and r.get("KeyCount") == 0 and not r.get("IsTruncated"),
          "empty listing: %s" % r)
    # Automatic pagination by awscli (page size 2) sees every key once.
    r = a.ok("list-objects-v2", "--bucket", B, "--prefix", "lst/", "--page-size", "2")
    check([o["Key"] for o in r.get("Contents", [])] == want, "awscli pagination: %s" % r)
    # ListObjects (v1) with marker.
    r = a.ok("list-objects", "--bucket", B, "--prefix", "lst/", "--no-paginate",
             "--max-keys", "4")
    check([o["Key"] for o in r.get("Contents", [])] == want[:4] and r.get("IsTruncated"),
          "list-objects v1 first page: %s" % r)
    r = a.ok("list-objects", "--bucket", B, "--prefix", "lst/", "--no-paginate",
             "--marker", want[3])
    check([o["Key"] for o in r.get("Contents", [])] == want[4:], "v1 marker: %s" % r)
    log("list-objects-v2 prefix/delimiter/max-keys/continuation/start-after as expected")

    # delete-objects, including a key that does not exist (reported as deleted, as S3 does).
    victims = ["lst/a/1", "lst/c", "lst/g/h/i/j", "lst/never"]
    spec = {"Objects": [{"Key": k} for k in victims], "Quiet": False}
    r = a.ok("delete-objects", "--bucket", B, "--delete", json.dumps(spec))
    check(sorted(d["Key"] for d in r.get("Deleted", [])) == sorted(victims) and
          not r.get("Errors"), "delete-objects result: %s" % r)
    got = [o["Key"] for o in a.keys(prefix="lst/").get("Contents", [])]
    check(got == [k for k in want if k not in victims], "after delete-objects: %s" % got)
    r = a.keys(prefix="lst/", delimiter="/")
    check([p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["lst/a/", "lst/b/"],
          "lst/g/ must vanish once its only key is deleted: %s" % r)
    spec = {"Objects": [{"Key": "lst/d"}, {"Key": "lst/z"}], "Quiet": True}
    r = a.ok("delete-objects", "--bucket", B, "--delete", json.dumps(spec))
    check(not r.get("Deleted") and not r.get("Errors"), "quiet delete-objects: %s" % r)
    got = [o["Key"] for o in a.keys(prefix="lst/").get("Contents", [])]
    check("lst/d" not in got and "lst/z" not in got and "lst/f" in got,
          "after quiet delete: %s" % got)
    log("delete-objects as expected")


def test_multipart(a, rnd):
    key = "mp/object"
    up = a.ok("create-multipart-upload", "--bucket", B, "--key", key, "--content-type",
              "application/x-mp", "--metadata", "kind=multipart")
    uid = up["UploadId"]
    check(up.get("Key") == key and up.get("Bucket") == B and uid, "create: %s" % up)
    parts = {1: rnd.randbytes(5 * MiB), 2: rnd.randbytes(5 * MiB + 1), 3: rnd.randbytes(1234)}
    stale = rnd.randbytes(5 * MiB + 99)
    etags = {}
    r = a.ok("upload-part", "--bucket", B, "--key", key, "--upload-id", uid, "--part-number",
             "2", "--body", a.tmp(stale))
    check(r.get("ETag") == '"%s"' % hashlib.md5(stale).hexdigest(), "part ETag %s" % r)
    for n in (3, 1, 2):  # out of order, and part 2 replaced
        r = a.ok("upload-part", "--bucket", B, "--key", key, "--upload-id", uid,
                 "--part-number", str(n), "--body", a.tmp(parts[n]))
        etags[n] = r["ETag"]
        check(etags[n] == '"%s"' % hashlib.md5(parts[n]).hexdigest(), "part %d ETag %s" % (
            n, r))
    lp = a.ok("list-parts", "--bucket", B, "--key", key, "--upload-id", uid)
    got = [(p["PartNumber"], p["Size"], p["ETag"]) for p in lp.get("Parts", [])]
    check(got == [(n, len(parts[n]), etags[n]) for n in (1, 2, 3)], "list-parts: %s" % got)
    lp = a.ok("list-parts", "--bucket", B, "--key", key, "--upload-id", uid, "--no-paginate",
              "--max-parts", "2")
    check([p["PartNumber"] for p in lp.get("Parts", [])] == [1, 2] and lp.get("IsTruncated")
          and str(lp.get("NextPartNumberMarker")) == "2", "list-parts max 2: %s" % lp)
    lp = a.ok("list-parts", "--bucket", B, "--key", key, "--upload-id", uid, "--no-paginate",
              "--part-number-marker", "2")
    check([p["PartNumber"] for p in lp.get("Parts", [])] == [3], "parts after 2: %s" % lp)

    other = a.ok("create-multipart-upload", "--bucket", B, "--key", "mp/other")["UploadId"]
    lu = a.ok("list-multipart-uploads", "--bucket", B)
    ups = sorted((u["Key"], u["UploadId"]) for u in lu.get("Uploads", []))
    check(ups == sorted([(key, uid), ("mp/other", other)]), "list-multipart-uploads: %s" % ups)
    lu = a.ok("list-multipart-uploads", "--bucket", B, "--prefix", "mp/o")
    check([u["Key"] for u in lu.get("Uploads", [])] == ["mp/object", "mp/other"],
          "list-multipart-uploads with prefix: %s" % lu)
    p = a.c.aws("s3api", "head-object", "--bucket", B, "--key", key)
    check(p.returncode != 0, "an uncompleted upload is not an object")

    # Complete with a wrong ETag: InvalidPart; with parts out of order: InvalidPartOrder.
    bad = {"Parts": [{"PartNumber": 1, "ETag": etags[1]},
                     {"PartNumber": 2, "ETag": '"%s"' % hashlib.md5(b"x").hexdigest()}]}
    a.fails("InvalidPart", "complete-multipart-upload", "--bucket", B, "--key", key,
            "--upload-id", uid, "--multipart-upload", json.dumps(bad))
    bad = {"Parts": [{"PartNumber": 2, "ETag": etags[2]}, {"PartNumber": 1, "ETag": etags[1]}]}
    a.fails("InvalidPartOrder", "complete-multipart-upload", "--bucket", B, "--key", key,
            "--upload-id", uid, "--multipart-upload", json.dumps(bad))
    done = {"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3)]}
    r = a.ok("complete-multipart-upload", "--bucket", B, "--key", key, "--upload-id", uid,
             "--multipart-upload", json.dumps(done))
    want = parts[1] + parts[2] + parts[3]
    check(r.get("ETag") == multipart_etag([parts[1], parts[2], parts[3]]),
          "complete ETag %s, want %s" % (r.get("ETag"), multipart_etag([parts[1], parts[2],
                                                                         parts[3]])))
    meta, got = a.get(key)
    check(len(got) == len(want) and sha256(got) == sha256(want),
          "completed object differs (%d bytes, want %d)" % (len(got), len(want)))
    check(meta.get("ContentType") == "application/x-mp" and
          lower_keys(meta.get("Metadata")) == {"kind": "multipart"},
          "multipart metadata: %s" % meta)
    lu = a.ok("list-multipart-uploads", "--bucket", B)
    check([u["UploadId"] for u in lu.get("Uploads", [])] == [other],
          "completed upload still listed: %s" % lu)
    a.fails("NoSuchUpload", "list-parts", "--bucket", B, "--key", key, "--upload-id", uid)
    log("multipart upload: replaced part, list-parts, list-uploads, complete as expected")

    # Complete with a subset of the parts (S3 allows gaps in part numbers).
    sub = a.ok("create-multipart-upload", "--bucket", B, "--key", "mp/subset")["UploadId"]
    sparts = {1: rnd.randbytes(5 * MiB), 2: rnd.randbytes(5 * MiB), 4: rnd.randbytes(10)}
    setags = {}
    for n, d in sparts.items():
        setags[n] = a.ok("upload-part", "--bucket", B, "--key", "mp/subset", "--upload-id",
                         sub, "--part-number", str(n), "--body", a.tmp(d))["ETag"]
    done = {"Parts": [{"PartNumber": n, "ETag": setags[n]} for n in (1, 4)]}
    a.ok("complete-multipart-upload", "--bucket", B, "--key", "mp/subset", "--upload-id", sub,
         "--multipart-upload", json.dumps(done))
    got = a.get("mp/subset")[1]
    check(sha256(got) == sha256(sparts[1] + sparts[4]), "subset completion content")

    # A part below 5 MiB that is not the last: EntityTooSmall, and the upload stays usable.
    small = a.ok("create-multipart-upload", "--bucket", B, "--key", "mp/small")["UploadId"]
    e1 = a.ok("upload-part", "--bucket", B, "--key", "mp/small", "--upload-id", small,
              "--part-number", "1", "--body", a.tmp(b"a" * 1000))["ETag"]
    e2 = a.ok("upload-part", "--bucket", B, "--key", "mp/small", "--upload-id", small,
              "--part-number", "2", "--body", a.tmp(b"b" * 1000))["ETag"]
    a.fails("EntityTooSmall", "complete-multipart-upload", "--bucket", B, "--key", "mp/small",
            "--upload-id", small, "--multipart-upload", json.dumps(
                {"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]}))
    a.fails("404", "head-object", "--bucket", B, "--key", "mp/small")
    a.ok("complete-multipart-upload", "--bucket", B, "--key", "mp/small", "--upload-id", small,
         "--multipart-upload", json.dumps({"Parts": [{"PartNumber": 1, "ETag": e1}]}))
    check(a.get("mp/small")[1] == b"a" * 1000, "single small part completion")

    # Abort: the parts go, the upload is gone, no object appears.
    a.ok("upload-part", "--bucket", B, "--key", "mp/other", "--upload-id", other,
         "--part-number", "1", "--body", a.tmp(rnd.randbytes(MiB)))
    a.ok("abort-multipart-upload", "--bucket", B, "--key", "mp/other", "--upload-id", other)
    a.fails("NoSuchUpload", "list-parts", "--bucket", B, "--key", "mp/other", "--upload-id",
            other)
    a.fails("NoSuchUpload", "upload-part", "--bucket", B, "--key", "mp/other", "--upload-id",
            other, "--part-number", "2", "--body", a.tmp(b"late"))
    a.fails("404", "head-object", "--bucket", B, "--key", "mp/other")
    lu = a.ok("list-multipart-uploads", "--bucket", B)
    check(not lu.get("Uploads"), "uploads left after complete and abort: %s" % lu)
    a.fails("NoSuchUpload", "upload-part", "--bucket", B, "--key", key, "--upload-id",
            "no-such-upload-id", "--part-number", "1", "--body", a.tmp(b"x"))
    log("multipart: subset completion, EntityTooSmall, abort as expected")


def test_buckets(a):
    r = a.ok("list-buckets")
    check(B in [b["Name"] for b in r.get("Buckets", [])], "list-buckets: %s" % r)
    a.ok("head-bucket", "--bucket", B)
    a.fails("404", "head-bucket", "--bucket", "no-such-bucket")
    a.fails("BucketNotEmpty", "delete-bucket", "--bucket", B)
    a.ok("create-bucket", "--bucket", "api-empty")
    p = a.c.aws("s3api", "create-bucket", "--bucket", "api-empty")
    # us-east-1 answers 200 to a create of a bucket one owns; other regions 409.
    check(p.returncode == 0 or err_code(p) == "BucketAlreadyOwnedByYou",
          "create of an existing bucket: %s" % err_code(p))
    a.fails("InvalidBucketName", "create-bucket", "--bucket", "Bad_Bucket")
    a.ok("delete-bucket", "--bucket", "api-empty")
    a.fails("NoSuchBucket", "delete-bucket", "--bucket", "api-empty")
    log("bucket operations as expected")


def test():
    rnd = random.Random(5)
    with Cluster(dnodes=6, ec="4+2", cnodes=1) as c:
        a = Api(c, tempfile.mkdtemp(dir=c.dir, prefix="work-"))
        a.ok("create-bucket", "--bucket", B)
        test_objects(a, rnd)
        test_copy(a, rnd)
        test_list(a)
        test_multipart(a, rnd)
        test_buckets(a)


if __name__ == "__main__":
    main(test)
