#!/usr/bin/python3
"""The nodes' Prometheus endpoints: `cairn-local up` writes METRICS_ENDPOINTS (C-nodes first,
then D-nodes); every endpoint answers /metrics with text `promtool check metrics` accepts and
/healthz with "ok"; the counters move by what this test did (S3 PUTs and GETs, an NFS MKDIR,
fragments stored on the D-nodes) and bad requests get HTTP errors without hurting the node."""
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request

from cluster import Cluster, check, log, main
from s3util import Client

PUTS = 5
GETS = 3
BUCKET = "metrics-bucket"
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def fetch(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


def parse(text):
    """{(name, 'label="value",...'): float} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        check(m, "not a sample line: %r" % line)
        out[(m.group(1), (m.group(2) or "")[1:-1])] = float(m.group(3))
    return out


def value(samples, name, labels=""):
    check((name, labels) in samples, "%s{%s} missing" % (name, labels))
    return samples[(name, labels)]


def promtool_check(url, text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    check(p.returncode == 0, "promtool check metrics failed on %s (%d):\n%s" % (
        url, p.returncode, p.stdout))


def raw(host, port, data):
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                return got
            got += b


def test():
    if not shutil.which("promtool"):
        print("SKIP: promtool is not installed (Debian package prometheus: run "
              "tools/install-deps)", file=sys.stderr)
        sys.exit(77)
    with Cluster(dnodes=6, ec="4+2", cnodes=1, dev_size="512M") as c:
        eps = c.env.get("METRICS_ENDPOINTS", "").split()
        check(len(eps) == 7, "METRICS_ENDPOINTS: 1 C-node + 6 D-nodes: %r" % eps)
        check(all(re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", e) for e in eps),
              "METRICS_ENDPOINTS form: %r" % eps)
        with open(os.path.join(c.dir, "cluster.env")) as f:
            check('METRICS_ENDPOINTS="%s"\n' % " ".join(eps) in f.read(), "quoted in cluster.env")

        host, port = c.hostport(0)
        ak, sk = c.credentials()
        s3 = Client(host, port, ak, sk, c.region())
        check(s3.put("/" + BUCKET, b"").status == 200, "CreateBucket")
        body = os.urandom(300000)
        for i in range(PUTS):
            check(s3.put("/%s/obj-%d" % (BUCKET, i), body).status == 200, "PUT %d" % i)
        for i in range(GETS):
            r = s3.get("/%s/obj-%d" % (BUCKET, i))
            check(r.status == 200 and r.body == body, "GET %d" % i)
        check(s3.get("/%s/missing" % BUCKET).status == 404, "GET of a missing key is 404")
        c.nfscheck("mkdir", c.nfs_url("/"), "%s/nfs-dir" % BUCKET)

        samples = []
        for url in eps:
            status, ctype, text = fetch(url)
            check(status == 200 and ctype.startswith("text/plain; version=0.0.4"),
                  "%s: %d %s" % (url, status, ctype))
            promtool_check(url, text)
            samples.append(parse(text))
            hz = fetch(url.replace("/metrics", "/healthz"))
            check(hz[0] == 200 and hz[2] == "ok\n", "%s healthz: %r" % (url, hz))
        log("%d endpoints pass promtool check metrics" % len(eps))

        cn = samples[0]
        check(value(cn, "cairn_s3_requests_total", 'op="PutObject"') >= PUTS, "S3 PUT count")
        check(value(cn, "cairn_s3_requests_total", 'op="GetObject"') >= GETS + 1, "GET count")
        check(value(cn, "cairn_s3_requests_total", 'op="CreateBucket"') >= 1, "CreateBucket")
        check(value(cn, "cairn_s3_errors_total", 'op="GetObject"') >= 1, "the 404 is counted")
        check(value(cn, "cairn_s3_received_bytes_total", 'op="PutObject"') >= PUTS * len(body),
              "S3 PUT bytes")
        check(value(cn, "cairn_s3_sent_bytes_total", 'op="GetObject"') >= GETS * len(body),
              "S3 GET bytes")
        check(value(cn, "cairn_s3_request_duration_seconds_count", 'op="PutObject"') >= PUTS,
              "PUT latency histogram count")
        check(value(cn, "cairn_s3_request_duration_seconds_bucket", 'op="PutObject",le="+Inf"')
              == value(cn, "cairn_s3_request_duration_seconds_count", 'op="PutObject"'),
              "+Inf bucket equals _count")
        check(value(cn, "cairn_nfs_requests_total", 'proc="MKDIR"') >= 1, "NFS MKDIR count")
        check(value(cn, "cairn_nfs_requests_total", 'proc="MOUNT_MNT"') >= 1, "MOUNT count")
        check(value(cn, "cairn_cnode_stripes_read_total") >= GETS, "stripes read")
        check(value(cn, "cairn_cnode_degraded_stripes_read_total") == 0, "nothing degraded")

        dn = samples[1:]
        puts = sum(value(s, "cairn_dnode_requests_total", 'op="frag_put"') for s in dn)
        gets = sum(value(s, "cairn_dnode_requests_total", 'op="frag_get"') for s in dn)
        frags = sum(value(s, "cairn_dnode_fragments") for s in dn)
        # 300 kB objects are one short stripe each: k + m = 6 fragments.
        check(puts >= PUTS * 6, "D-node frag_put total %d < %d" % (puts, PUTS * 6))
        check(gets >= GETS * 4, "D-node frag_get total %d < %d" % (gets, GETS * 4))
        check(frags >= PUTS * 6, "D-node fragments gauge %d" % frags)
        check(all(value(s, "cairn_dnode_device_size_bytes") > 0 for s in dn), "device size")
        check(all(value(s, "cairn_dnode_device_used_bytes") > 0 for s in dn), "device used")
        check(sum(value(s, "cairn_dnode_requests_total", 'op="raft"') for s in dn) > 0,
              "Raft traffic counted")
        check(sum(value(s, "cairn_dnode_request_duration_seconds_count", 'op="frag_put"')
                  for s in dn) == puts, "frag_put latency count equals the request count")
        log("S3 %d PUTs, D-nodes %d frag puts, %d frag gets, %d fragments" % (
            value(cn, "cairn_s3_requests_total", 'op="PutObject"'), puts, gets, frags))

        # Bad requests: HTTP errors, and the endpoint serves on.
        mhost, mport = re.match(r"http://([^:/]+):(\d+)/", eps[1]).groups()
        mport = int(mport)
        for req, want in ((b"GET /nope HTTP/1.1\r\n\r\n", b"HTTP/1.1 404"),
                          (b"DELETE /metrics HTTP/1.1\r\n\r\n", b"HTTP/1.1 405"),
                          (b"\x00\x01\x02\r\n\r\n", b"HTTP/1.1 400"),
                          (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n", b"HTTP/1.1 431")):
            got = raw(mhost, mport, req)
            check(got.startswith(want), "%r... answered %r" % (req[:20], got[:60]))
        try:
            fetch("http://%s:%d/other" % (mhost, mport))
            check(False, "/other must be 404")
        except urllib.error.HTTPError as e:
            check(e.code == 404, "/other: %d" % e.code)
        check(fetch(eps[1])[0] == 200, "the D-node still serves /metrics")
        check(s3.get("/%s/obj-0" % BUCKET).status == 200, "and S3 still works")


if __name__ == "__main__":
    main(test)
