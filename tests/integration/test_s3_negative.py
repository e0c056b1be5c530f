#!/usr/bin/python3
"""Bad S3 requests get the S3 error AWS gives, and change nothing (invariant 7).  Raw HTTP
(http.client and sockets) signed by s3util's SigV4 signer: wrong secret, unknown access key,
tampered signature, body or signed header, clock skew, expired and tampered presigned URLs,
bad chunk signatures in aws-chunked uploads, bad Content-MD5, oversized heads, malformed XML
for DeleteObjects and CompleteMultipartUpload, anonymous access (and a public bucket), a
deleted user.  Every case has a positive control (the same request done right succeeds), and
after each one the objects it aimed at are checked to be absent or unchanged."""
import os
import re
import time
import xml.etree.ElementTree as ET

from cluster import Cluster, check, log, main, sha256
from s3util import (STREAMING, Client, amz_now, error_code, flip_hex, md5_b64, raw_exchange,
                    request)

B = "neg"
ORIG = os.urandom(100000)
OTHER = b"this body must never be stored" * 100


class Neg:
    def __init__(self, c):
        self.c = c
        host, port = c.hostport(0)
        ak, sk = c.credentials()
        self.cl = Client(host, port, ak, sk, c.region())
        self.cases = 0

    def expect(self, r, status, code, what):
        self.cases += 1
        got = r.code()
        ok = r.status == status and (code is None or got == code)
        check(ok, "%s: want %d %s, got %d %s\n  response: %r" % (what, status, code or "",
                                                                 r.status, got, r))

    def ok(self, r, what, status=200):
        check(r.status == status, "positive control %s: want %d, got %r" % (what, status, r))
        return r

    def body_of(self, key):
        r = self.cl.get("/%s/%s" % (B, key))
        if r.status == 404:
            check(r.code() == "NoSuchKey", "404 without NoSuchKey: %r" % r)
            return None
        check(r.status == 200, "GET %s: %r" % (key, r))
        return r.body

    def unchanged(self, what, absent=()):
        got = self.body_of("obj")
        check(got is not None and sha256(got) == sha256(ORIG), "%s changed neg/obj" % what)
        for key in absent:
            check(self.body_of(key) is None, "%s created %s/%s" % (what, B, key))


def case_auth(n):
    cl = n.cl
    sk = cl.signer.secret_key
    n.ok(cl.get("/%s/obj" % B), "signed GET")
    for method, body in (("GET", b""), ("PUT", OTHER)):
        path = "/%s/%s" % (B, "obj" if method == "GET" else "new-wrong-secret")
        n.expect(cl.send(method, path, body=body, secret=sk[:-1] + ("A" if sk[-1] != "A"
                                                                     else "B")),
                 403, "SignatureDoesNotMatch", "%s with a wrong secret" % method)
        n.expect(cl.send(method, path, body=body, access_key="CAIRNNOSUCHKEY000000"),
                 403, "InvalidAccessKeyId", "%s with an unknown access key" % method)
        n.expect(cl.send(method, path, body=body, tamper=flip_hex), 403,
                 "SignatureDoesNotMatch", "%s with a tampered signature" % method)
    n.expect(cl.send("PUT", "/%s/obj" % B, body=OTHER, secret="x" * 40), 403,
             "SignatureDoesNotMatch", "PUT over neg/obj with a wrong secret")
    n.expect(cl.send("PUT", "/%s/obj" % B, body=OTHER, tamper=flip_hex), 403,
             "SignatureDoesNotMatch", "PUT over neg/obj with a tampered signature")
    n.unchanged("bad signatures", absent=["new-wrong-secret"])

    # Body changed after signing: the signed x-amz-content-sha256 no longer matches.
    h = cl.signer.sign_headers("PUT", cl.hosthdr, "/%s/obj" % B, body=OTHER)
    n.expect(request(cl.host, cl.port, "PUT", cl.target("/%s/obj" % B), h, OTHER[:-1] + b"!"),
             400, "XAmzContentSHA256Mismatch", "PUT whose body differs from its signed hash")
    # A signed header changed after signing.
    h = cl.signer.sign_headers("PUT", cl.hosthdr, "/%s/obj" % B, body=OTHER,
                               headers={"Content-Type": "text/plain"})
    h["content-type"] = "text/html"
    n.expect(request(cl.host, cl.port, "PUT", cl.target("/%s/obj" % B), h, OTHER), 403,
             "SignatureDoesNotMatch", "PUT with a signed header changed after signing")
    # Signed for another path.
    h = cl.signer.sign_headers("PUT", cl.hosthdr, "/%s/elsewhere" % B, body=OTHER)
    n.expect(request(cl.host, cl.port, "PUT", cl.target("/%s/obj" % B), h, OTHER), 403,
             "SignatureDoesNotMatch", "PUT signed for another key")
    n.unchanged("tampered requests", absent=["elsewhere"])

    # Clock skew: 20 minutes either way is refused, 10 minutes is fine (limit 15).
    for off in (-1200, 1200):
        n.expect(cl.get("/%s/obj" % B, amz_date=amz_now(off)), 403, "RequestTimeTooSkewed",
                 "GET with X-Amz-Date %+d s" % off)
        n.expect(cl.put("/%s/obj" % B, OTHER, amz_date=amz_now(off)), 403,
                 "RequestTimeTooSkewed", "PUT with X-Amz-Date %+d s" % off)
    for off in (-600, 600):
        n.ok(cl.get("/%s/obj" % B, amz_date=amz_now(off)), "GET with X-Amz-Date %+d s" % off)
    n.unchanged("skewed requests")
    log("auth errors (secret, key, signature, body hash, skew) as expected")


def case_presigned(n):
    cl = n.cl
    path = "/%s/obj" % B
    target, q = cl.presigned_target("GET", path, expires=300)
    r = request(cl.host, cl.port, "GET", target, {"host": cl.hosthdr})
    check(r.status == 200 and r.body == ORIG, "positive control: presigned GET: %r" % r)

    target, _ = cl.presigned_target("GET", path, expires=60, amz_date=amz_now(-120))
    n.expect(request(cl.host, cl.port, "GET", target, {"host": cl.hosthdr}), 403,
             "AccessDenied", "expired presigned GET")
    target, _ = cl.presigned_target("PUT", "/%s/obj" % B, expires=60, amz_date=amz_now(-120))
    n.expect(request(cl.host, cl.port, "PUT", target, {"host": cl.hosthdr}, OTHER), 403,
             "AccessDenied", "expired presigned PUT")

    def with_param(q, name, fn):
        return [(k, fn(v) if k == name else v) for k, v in q]

    q = cl.signer.presign("GET", cl.hosthdr, path, expires=300)
    bad = cl.target(path, with_param(q, "X-Amz-Signature", flip_hex))
    n.expect(request(cl.host, cl.port, "GET", bad, {"host": cl.hosthdr}), 403,
             "SignatureDoesNotMatch", "presigned GET with a tampered signature")
    bad = cl.target(path, with_param(q, "X-Amz-Expires", lambda v: "3600"))
    r = request(cl.host, cl.port, "GET", bad, {"host": cl.hosthdr})
    n.expect(r, 403, None, "presigned GET with a longer X-Amz-Expires")
    check(r.code() in ("SignatureDoesNotMatch", "AccessDenied"), "code %r" % r)
    n.expect(request(cl.host, cl.port, "GET", cl.target("/%s/obj2" % B, q),
                     {"host": cl.hosthdr}), 403, "SignatureDoesNotMatch",
             "presigned GET used for another key")
    q = cl.signer.presign("PUT", cl.hosthdr, path, expires=300)
    n.expect(request(cl.host, cl.port, "PUT", cl.target(path, with_param(
        q, "X-Amz-Signature", flip_hex)), {"host": cl.hosthdr}, OTHER), 403,
        "SignatureDoesNotMatch", "presigned PUT with a tampered signature")
    q = cl.signer.presign("GET", cl.hosthdr, path, expires=300)
    n.expect(request(cl.host, cl.port, "PUT", cl.target(path, q), {"host": cl.hosthdr},
                     OTHER), 403, "SignatureDoesNotMatch", "presigned GET URL used for a PUT")
    n.unchanged("bad presigned URLs")
    # And a correct presigned PUT works (on another key).
    q = cl.signer.presign("PUT", cl.hosthdr, "/%s/presigned-put" % B, expires=300)
    n.ok(request(cl.host, cl.port, "PUT", cl.target("/%s/presigned-put" % B, q),
                 {"host": cl.hosthdr}, b"presigned"), "presigned PUT")
    check(n.body_of("presigned-put") == b"presigned", "presigned PUT stored its body")
    log("presigned URL errors as expected")


def chunked_put(cl, path, data, **tamper):
    amz = amz_now()
    h = cl.signer.sign_headers("PUT", cl.hosthdr, path, payload_hash=STREAMING, amz_date=amz,
                               headers={"Content-Encoding": "aws-chunked",
                                        "X-Amz-Decoded-Content-Length": str(len(data))})
    body = cl.signer.chunked_body(h["_signature"], amz, data, **tamper)
    h["content-length"] = str(len(body))
    return request(cl.host, cl.port, "PUT", cl.target(path), h, body)


def case_chunked(n):
    cl = n.cl
    data = os.urandom(3 * 65536 + 1000)  # chunks 0..3 of data, then the final empty chunk 4
    n.ok(chunked_put(cl, "/%s/chunked-ok" % B, data), "aws-chunked PUT")
    got = n.body_of("chunked-ok")
    check(got is not None and sha256(got) == sha256(data), "aws-chunked PUT stored its body")
    for key in ("chunked-new", "obj"):
        path = "/%s/%s" % (B, key)
        n.expect(chunked_put(cl, path, data, tamper_chunk=1), 403,
                 "SignatureDoesNotMatch", "aws-chunked PUT %s, chunk 1 badly signed" % key)
        n.expect(chunked_put(cl, path, data, tamper_chunk=0), 403,
                 "SignatureDoesNotMatch", "aws-chunked PUT %s, chunk 0 badly signed" % key)
        n.expect(chunked_put(cl, path, data, tamper_data_chunk=2), 403,
                 "SignatureDoesNotMatch", "aws-chunked PUT %s, chunk 2 data changed" % key)
        n.expect(chunked_put(cl, path, data, tamper_chunk=4), 403, "SignatureDoesNotMatch",
                 "aws-chunked PUT %s, final empty chunk badly signed" % key)
    n.unchanged("bad aws-chunked uploads", absent=["chunked-new"])
    log("aws-chunked signature errors as expected")


def case_md5(n):
    cl = n.cl
    n.ok(cl.put("/%s/md5-ok" % B, OTHER, headers={"Content-MD5": md5_b64(OTHER)}),
         "PUT with the right Content-MD5")
    for key in ("md5-new", "obj"):
        path = "/%s/%s" % (B, key)
        n.expect(cl.put(path, OTHER, headers={"Content-MD5": md5_b64(b"something else")}),
                 400, "BadDigest", "PUT %s with a wrong Content-MD5" % key)
        n.expect(cl.put(path, OTHER, headers={"Content-MD5": "not*base64!"}), 400,
                 "InvalidDigest", "PUT %s with a Content-MD5 that is not base64" % key)
        n.expect(cl.put(path, OTHER, headers={"Content-MD5": "AAAAAAAAAAA="}), 400,
                 "InvalidDigest", "PUT %s with a Content-MD5 of 8 bytes" % key)
    n.unchanged("bad Content-MD5", absent=["md5-new"])
    log("Content-MD5 errors as expected")


def raw_head(cl, method, path, extra_lines, body=b"", sign=True):
    h = cl.signer.sign_headers(method, cl.hosthdr, path, body=body) if sign else \
        {"host": cl.hosthdr}
    lines = ["%s %s HTTP/1.1" % (method, cl.target(path))]
    lines += ["%s: %s" % (k, v) for k, v in h.items() if not k.startswith("_")]
    lines += ["Content-Length: %d" % len(body)] if method == "PUT" else []
    lines += extra_lines
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def case_big_heads(n):
    cl = n.cl
    ok = raw_exchange(cl.host, cl.port, raw_head(cl, "GET", "/%s/obj" % B, ["X-Small: 1"]))
    check(ok[0] == 200 and ok[2] == ORIG, "positive control: raw GET: %s" % (ok[:2],))
    cases = [
        ("GET with a 20 KiB header", raw_head(cl, "GET", "/%s/obj" % B,
                                              ["X-Big: " + "a" * 20480])),
        ("PUT with a 20 KiB header", raw_head(cl, "PUT", "/%s/obj" % B,
                                              ["X-Big: " + "b" * 20480], OTHER)),
        ("PUT of a new key with a 64 KiB header",
         raw_head(cl, "PUT", "/%s/bighead-new" % B, ["X-Big: " + "c" * 65536], OTHER)),
        ("PUT with 2000 headers", raw_head(cl, "PUT", "/%s/obj" % B,
                                           ["X-H%d: v" % i for i in range(2000)], OTHER)),
    ]
    for what, data in cases:
        status, head, body = raw_exchange(cl.host, cl.port, data)
        n.cases += 1
        check(status == 400, "%s: want 400, got %s\n%s\n%r" % (what, status, head, body[:300]))
        code = error_code(body)
        check(code in (None, "RequestHeaderSectionTooLarge"),
              "%s: error code %s, want RequestHeaderSectionTooLarge" % (what, code))
    status, head, _ = raw_exchange(cl.host, cl.port, raw_head(
        cl, "GET", "/%s/%s" % (B, "u" * 20000), []))
    n.cases += 1
    check(status in (400, 414), "GET with a 20 KB URL: want 400 or 414, got %s\n%s" % (
        status, head))
    n.unchanged("oversized heads", absent=["bighead-new"])
    log("oversized heads refused with 400")


def delete_xml(keys, quiet=False):
    return ("<Delete>%s%s</Delete>" % ("<Quiet>true</Quiet>" if quiet else "", "".join(
        "<Object><Key>%s</Key></Object>" % k for k in keys))).encode()


def case_xml(n):
    cl = n.cl
    n.ok(cl.put("/%s/del-me" % B, b"x"), "PUT del-me")
    n.ok(cl.put("/%s/keep/me" % B, b"keep"), "PUT keep/me")
    body = delete_xml(["del-me"])
    r = n.ok(cl.send("POST", "/" + B, [("delete", None)], {"Content-MD5": md5_b64(body)},
                     body), "well-formed DeleteObjects")
    check(b"del-me" in r.body and n.body_of("del-me") is None, "DeleteObjects deleted: %r" % r)
    bad_bodies = [
        b"this is not XML",
        b"<Delete><Object><Key>obj</Key></Object>",
        b"<Delete><Object><Key>obj</Key></Object></Delete",
        b"<Delete><Object><Key>obj</Key></Object></Delete><Delete></Delete>",
        b"<Delete><Object><NotKey>obj</NotKey></Object></Delete>",
        b"<Delete><Object><Key>obj</Key></Object><Object></Delete></Object>",
        delete_xml(["k%d" % i for i in range(1001)] + ["obj"]),
    ]
    for i, body in enumerate(bad_bodies):
        n.expect(cl.send("POST", "/" + B, [("delete", None)], {"Content-MD5": md5_b64(body)},
                         body), 400, "MalformedXML", "DeleteObjects body %d (%r...)" % (
                             i, body[:60]))
    check(n.body_of("keep/me") == b"keep", "malformed DeleteObjects deleted keep/me")
    n.unchanged("malformed DeleteObjects")

    # CompleteMultipartUpload.
    key = "/%s/mp-xml" % B
    r = n.ok(cl.send("POST", key, [("uploads", None)]), "CreateMultipartUpload")
    m = re.search(rb"<UploadId>([^<]+)</UploadId>", r.body)
    check(m, "UploadId in %r" % r.body)
    uid = m.group(1).decode()
    part = os.urandom(70000)
    r = n.ok(cl.put(key, part, params=[("partNumber", "1"), ("uploadId", uid)]), "UploadPart")
    etag = r.headers.get("etag")
    check(etag, "UploadPart ETag: %r" % r)
    good = ("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part>"
            "</CompleteMultipartUpload>" % etag).encode()
    for i, body in enumerate([b"garbage", good[:-5], good[:40],
                              b"<CompleteMultipartUpload></CompleteMultipartUpload>",
                              good.replace(b"<PartNumber>1</PartNumber>", b""),
                              good.replace(b"PartNumber>1<", b"PartNumber>one<")]):
        r = cl.send("POST", key, [("uploadId", uid)], body=body)
        n.expect(r, 400, "MalformedXML" if i < 4 else None,
                 "CompleteMultipartUpload body %d (%r...)" % (i, body[:60]))
        check(r.code() in ("MalformedXML", "InvalidArgument", "InvalidPart"),
              "code %r" % r)
        check(n.body_of("mp-xml") is None, "malformed completion %d created the object" % i)
    r = n.ok(cl.get(key, params=[("uploadId", uid)]), "ListParts after bad completions")
    check(b"<PartNumber>1</PartNumber>" in r.body, "part 1 still listed: %r" % r.body[:500])
    n.ok(cl.send("POST", key, [("uploadId", uid)], body=good), "CompleteMultipartUpload")
    got = n.body_of("mp-xml")
    check(got is not None and sha256(got) == sha256(part), "completed object")
    n.unchanged("malformed CompleteMultipartUpload")
    log("malformed XML refused with MalformedXML")


def case_anonymous(n):
    cl = n.cl
    for method, path, body in (("GET", "/%s/obj" % B, b""), ("HEAD", "/%s/obj" % B, b""),
                               ("GET", "/" + B, b""), ("GET", "/", b""),
                               ("PUT", "/%s/obj" % B, OTHER), ("PUT", "/%s/anon" % B, OTHER),
                               ("DELETE", "/%s/obj" % B, b""), ("PUT", "/anon-bucket", b"")):
        r = cl.send(method, path, body=body, sign=False)
        n.expect(r, 403, None if method == "HEAD" else "AccessDenied",
                 "anonymous %s %s" % (method, path))
    n.unchanged("anonymous requests", absent=["anon"])
    r = cl.get("/anon-bucket/x")
    check(r.code() == "NoSuchBucket", "anonymous PUT created a bucket: %r" % r)

    # A public bucket: anonymous reads work, anonymous writes still do not.
    def ctl(*args):
        p = n.c.ctl(*args)
        check(p.returncode == 0, "cairnctl %s: %s %s" % (" ".join(args), p.stdout, p.stderr))

    ctl("bucket", "public", B, "on")
    r = cl.send("GET", "/%s/obj" % B, sign=False)
    check(r.status == 200 and r.body == ORIG, "anonymous GET in a public bucket: %r" % r)
    for method, path, body in (("PUT", "/%s/obj" % B, OTHER), ("PUT", "/%s/anon" % B, OTHER),
                               ("DELETE", "/%s/obj" % B, b"")):
        n.expect(cl.send(method, path, body=body, sign=False), 403, "AccessDenied",
                 "anonymous %s %s in a public bucket" % (method, path))
    n.unchanged("anonymous writes to a public bucket", absent=["anon"])
    ctl("bucket", "public", B, "off")
    n.expect(cl.send("GET", "/%s/obj" % B, sign=False), 403, "AccessDenied",
             "anonymous GET once the bucket is private again")
    log("anonymous access refused (and allowed read-only in a public bucket)")


def xml_root(body):
    try:
        return ET.fromstring(body).tag.split("}")[-1]
    except ET.ParseError:
        return None


def case_subresources(n):
    """Sub-resources the C-node may not implement (tagging, ACLs, bucket configurations)
    must be answered as such (or 501 NotImplemented), never served as the plain object or
    bucket operation: a PUT ?tagging that stores its XML as the object, or a DELETE ?tagging
    that deletes the object, loses data."""
    cl = n.cl
    obj = "/%s/obj" % B
    roots = {"tagging": "Tagging", "acl": "AccessControlPolicy"}
    for sub in ("tagging", "acl", "retention", "legal-hold", "attributes", "torrent"):
        r = cl.get(obj, params=[(sub, None)])
        n.cases += 1
        check(r.body != ORIG and r.status in (200, 400, 404, 405, 501),
              "GET %s?%s answered like a GetObject: %r" % (obj, sub, r))
        if r.status == 200:
            check(xml_root(r.body) == roots.get(sub), "GET %s?%s: %r" % (obj, sub, r))
    tagging = (b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet>"
               b"</Tagging>")
    for method, sub, body, headers in (
            ("PUT", "tagging", tagging, {"Content-MD5": md5_b64(tagging)}),
            ("PUT", "acl", b"", {"x-amz-acl": "private"}),
            ("DELETE", "tagging", b"", {}),
            ("PUT", "retention", b"<Retention/>", {"Content-MD5": md5_b64(b"<Retention/>")}),
            ("DELETE", "acl", b"", {})):
        r = cl.send(method, obj, [(sub, None)], headers, body)
        n.cases += 1
        check(r.status in (200, 204, 400, 405, 501), "%s %s?%s: %r" % (method, obj, sub, r))
        n.unchanged("%s %s?%s (answered %d %s)" % (method, obj, sub, r.status, r.code()))
    for sub in ("acl", "policy", "lifecycle", "cors", "tagging", "website", "encryption",
                "logging", "replication", "object-lock", "notification", "versioning"):
        r = cl.get("/" + B, params=[(sub, None)])
        n.cases += 1
        check(xml_root(r.body) != "ListBucketResult",
              "GET /%s?%s answered with an object listing: %r" % (B, sub, r))
    r = cl.get("/" + B, params=[("location", None)])
    check(r.status == 200 and xml_root(r.body) == "LocationConstraint",
          "GetBucketLocation: %r" % r)
    log("unimplemented sub-resources refused without touching data")


def case_user_del(n):
    ak, sk = "CAIRNTESTUSER0000001", "TmpSecret0123456789abcdefghijklmnopqrstu"
    p = n.c.ctl("user", "create", ak, sk)
    check(p.returncode == 0, "cairnctl user create: %s %s" % (p.stdout, p.stderr))
    other = Client(n.cl.host, n.cl.port, ak, sk, n.c.region())
    n.ok(other.get("/"), "ListBuckets as a new user")
    p = n.c.ctl("user", "del", ak)
    check(p.returncode == 0, "cairnctl user del: %s %s" % (p.stdout, p.stderr))
    t0 = time.monotonic()
    while True:  # a C-node may cache users for a short while; never for long
        r = other.get("/")
        if r.status != 200 or time.monotonic() - t0 > 10:
            break
        time.sleep(0.5)
    n.expect(r, 403, "InvalidAccessKeyId", "ListBuckets as a deleted user (%.1f s after "
             "the delete)" % (time.monotonic() - t0))
    log("a deleted user's key is refused (after %.1f s)" % (time.monotonic() - t0))


def test():
    with Cluster(dnodes=6, ec="4+2", cnodes=1) as c:
        n = Neg(c)
        n.ok(n.cl.put("/" + B, b""), "CreateBucket")
        n.ok(n.cl.put("/%s/obj" % B, ORIG), "PUT neg/obj")
        n.ok(n.cl.put("/%s/obj2" % B, b"second object"), "PUT neg/obj2")
        case_auth(n)
        case_presigned(n)
        case_chunked(n)
        case_md5(n)
        case_big_heads(n)
        case_xml(n)
        case_anonymous(n)
        case_subresources(n)
        case_user_del(n)
        status = c.local("status").stdout
        check("stopped" not in status, "a node died:\n" + status)
        log("%d bad requests answered with the right error, nothing changed" % n.cases)


if __name__ == "__main__":
    main(test)
