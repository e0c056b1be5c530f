"""S3 helpers for integration tests, standard library only: an AWS SigV4 signer (header auth,
presigned URLs, aws-chunked signed streaming bodies), raw HTTP requests with http.client and
raw sockets, S3 XML error parsing and random files hashed while they are written.

The signer is written from the AWS documentation ("Signature Version 4 signing process",
"Authenticating requests: using query parameters", "Signature calculations for the
Authorization header: transferring payload in multiple chunks"), independently of the server,
and every negative test signs one correct request first, so a signer bug shows as a failed
positive control rather than as a passing negative test.
"""
import base64
import datetime
import hashlib
import hmac
import http.client
import os
import socket
import urllib.parse
import xml.etree.ElementTree as ET

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def write_random(path, size, chunk=1 << 20):
    """Write size random bytes to path; returns their SHA-256 hex."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(chunk, left))
            h.update(b)
            f.write(b)
            left -= len(b)
    return h.hexdigest()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def multipart_etag(parts):
    """The S3 ETag of an object completed from parts (list of bytes)."""
    digests = [hashlib.md5(p).digest() for p in parts]
    return '"%s-%d"' % (hashlib.md5(b"".join(digests)).hexdigest(), len(parts))


def multipart_etag_of_file(path, part_size):
    digests = []
    with open(path, "rb") as f:
        while True:
            b = f.read(part_size)
            if not b:
                break
            digests.append(hashlib.md5(b).digest())
    return '"%s-%d"' % (hashlib.md5(b"".join(digests)).hexdigest(), len(digests))


def uri_encode(s, keep_slash=False):
    safe = "-_.~" + ("/" if keep_slash else "")
    if isinstance(s, str):
        s = s.encode()
    return urllib.parse.quote(s, safe=safe)


def amz_now(offset_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y%m%dT%H%M%SZ")


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date, region, service="s3"):
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def canonical_query(params):
    """params: list of (name, value) (raw, not encoded)."""
    enc = sorted((uri_encode(k), uri_encode(v)) for k, v in params)
    return "&".join("%s=%s" % kv for kv in enc)


class Signer:
    def __init__(self, access_key, secret_key, region="us-east-1"):
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region

    def scope(self, amz_date):
        return "%s/%s/s3/aws4_request" % (amz_date[:8], self.region)

    def _sign(self, method, path, params, headers, signed, payload_hash, amz_date,
              secret=None):
        canon_headers = "".join("%s:%s\n" % (h, " ".join(str(headers[h]).split()))
                                for h in signed)
        creq = "\n".join([method, uri_encode(path, keep_slash=True), canonical_query(params),
                          canon_headers, ";".join(signed), payload_hash])
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, self.scope(amz_date),
                         sha256_hex(creq.encode())])
        key = signing_key(secret if secret is not None else self.secret_key, amz_date[:8],
                          self.region)
        return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()

    def sign_headers(self, method, host, path, params=(), headers=None, body=b"",
                     payload_hash=None, amz_date=None, secret=None, access_key=None,
                     tamper=None):
        """Headers (lowercase names) for a header-signed request.  path is the raw
        (unencoded) path "/bucket/key"; params a list of (name, value).  tamper(sig) may
        change the signature before it goes into Authorization."""
        amz_date = amz_date or amz_now()
        h = {k.lower(): v for k, v in (headers or {}).items()}
        h["host"] = host
        h["x-amz-date"] = amz_date
        h["x-amz-content-sha256"] = payload_hash or sha256_hex(body)
        signed = sorted(k for k in h if k in ("host", "content-md5", "content-type",
                                              "content-encoding") or k.startswith("x-amz-"))
        sig = self._sign(method, path, list(params), h, signed, h["x-amz-content-sha256"],
                         amz_date, secret)
        if tamper:
            sig = tamper(sig)
        h["authorization"] = ("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                              "Signature=%s" % (access_key or self.access_key,
                                                self.scope(amz_date), ";".join(signed), sig))
        h["_signature"] = sig
        return h

    def presign(self, method, host, path, expires=300, amz_date=None, params=()):
        """The query parameters (list of pairs, X-Amz-Signature last) of a presigned URL."""
        amz_date = amz_date or amz_now()
        q = list(params) + [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", "%s/%s" % (self.access_key, self.scope(amz_date))),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        sig = self._sign(method, path, q, {"host": host}, ["host"], UNSIGNED, amz_date)
        return q + [("X-Amz-Signature", sig)]

    def chunked_body(self, seed_sig, amz_date, data, chunk_size=65536, tamper_chunk=None,
                     tamper_data_chunk=None):
        """aws-chunked encoding of data with chunk signatures chained from seed_sig.
        tamper_chunk=i corrupts chunk i's signature (the final empty chunk is the last
        index); tamper_data_chunk=i flips a byte of chunk i's data after it was signed."""
        key = signing_key(self.secret_key, amz_date[:8], self.region)
        chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
        prev = seed_sig
        out = []
        for i, c in enumerate(chunks):
            sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, self.scope(amz_date), prev,
                             EMPTY_SHA256, sha256_hex(c)])
            sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
            prev = sig
            if tamper_chunk == i:
                sig = flip_hex(sig)
            if tamper_data_chunk == i and c:
                c = bytes([c[0] ^ 1]) + c[1:]
            out.append(b"%x;chunk-signature=%s\r\n%s\r\n" % (len(c), sig.encode(), c))
        return b"".join(out)


def flip_hex(sig, pos=10):
    c = sig[pos]
    return sig[:pos] + ("0" if c != "0" else "1") + sig[pos + 1:]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lowercase name -> value
        self.body = body

    def code(self):
        return error_code(self.body)

    def __repr__(self):
        return "HTTP %d %s %r" % (self.status, dict(self.headers), self.body[:600])


def error_code(body):
    """<Code> of an S3 XML error body, or None."""
    if not body:
        return None
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.split("}")[-1] == "Code":
            return el.text
    return None


def request(host, port, method, target, headers, body=b"", timeout=60):
    """One request on a fresh connection.  target is the encoded path?query; headers a dict
    (names starting with '_' are skipped).  Returns a Response."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            if not k.startswith("_"):
                conn.putheader(k, v)
        if "content-length" not in {k.lower() for k in headers}:
            if body or method in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
        try:
            conn.endheaders()
            if body:
                conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed: its answer may still be readable
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def raw_exchange(host, port, data, timeout=20):
    """Send raw bytes on a fresh connection and read until the server closes or the first
    response is complete; returns (status or None, headers text, body bytes)."""
    s = socket.create_connection((host, port), timeout=timeout)
    buf = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buf[:head_end].decode("latin-1")
                clen = None
                for line in head.split("\r\n")[1:]:
                    if line.lower().startswith("content-length:"):
                        clen = int(line.split(":", 1)[1])
                if clen is not None and len(buf) >= head_end + 4 + clen:
                    break
            try:
                b = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            buf += b
    finally:
        s.close()
    head_end = buf.find(b"\r\n\r\n")
    if not buf.startswith(b"HTTP/1.") or head_end < 0:
        return None, buf[:200].decode("latin-1"), b""
    head = buf[:head_end].decode("latin-1")
    return int(head.split()[1]), head, buf[head_end + 4:]


class Client:
    """Raw signed S3 requests against one C-node."""

    def __init__(self, host, port, access_key, secret_key, region="us-east-1"):
        self.host = host
        self.port = port
        self.hosthdr = "%s:%d" % (host, port)
        self.signer = Signer(access_key, secret_key, region)

    def target(self, path, params=()):
        t = uri_encode(path, keep_slash=True)
        if params:
            t += "?" + "&".join("%s=%s" % (uri_encode(k), uri_encode(v)) if v is not None
                                else uri_encode(k) for k, v in params)
        return t

    def send(self, method, path, params=(), headers=None, body=b"", sign=True, **signargs):
        """params: list of (name, value); a value of None sends the bare name ("?delete")
        and signs it with an empty value."""
        params = list(params)
        if sign:
            h = self.signer.sign_headers(method, self.hosthdr, path,
                                         [(k, v or "") for k, v in params], headers, body,
                                         **signargs)
        else:
            h = {k.lower(): v for k, v in (headers or {}).items()}
            h["host"] = self.hosthdr
        return request(self.host, self.port, method, self.target(path, params), h, body)

    def presigned_target(self, method, path, **kw):
        q = self.signer.presign(method, self.hosthdr, path, **kw)
        return self.target(path, q), q

    def get(self, path, **kw):
        return self.send("GET", path, **kw)

    def put(self, path, body, **kw):
        return self.send("PUT", path, body=body, **kw)
