#!/usr/bin/python3
"""The C-node side of tools/cairn-local: `up --cnodes M` writes S3_ENDPOINTS, the admin keys
and CNODE_COUNT to cluster.env; status lists the C-nodes; kill/start work on one C-node and
it comes back on its port; down then up keeps the ports and the keys (the admin user is
created once) and the data."""
import json
import os
import re
import socket

from cluster import Cluster, check, log, main
from s3util import Client


def accepts(host, port):
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def client(c, i):
    host, port = c.hostport(i)
    ak, sk = c.credentials()
    return Client(host, port, ak, sk, c.region())


def test():
    with Cluster(dnodes=6, ec="4+2", cnodes=2, dev_size="512M") as c:
        env = c.env
        with open(os.path.join(c.dir, "cluster.env")) as f:
            text = f.read()
        eps = c.endpoints()
        check(len(eps) == 2 and all(re.fullmatch(r"http://127\.0\.0\.1:\d+", e) for e in eps),
              "S3_ENDPOINTS: %s" % eps)
        check('S3_ENDPOINTS="%s"\n' % " ".join(eps) in text, "S3_ENDPOINTS is quoted:\n" + text)
        check(env.get("CNODE_COUNT") == "2" and env.get("S3_REGION") == "us-east-1",
              "CNODE_COUNT/S3_REGION: %s" % env)
        ak, sk = c.credentials()
        check(re.fullmatch(r"CAIRN[A-Z0-9]{15}", ak) and len(sk) == 40, "keys %s %s" % (ak, sk))
        with open(os.path.join(c.dir, "cluster.json")) as f:
            st = json.load(f)
        check(st.get("s3_access_key") == ak and st.get("s3_secret_key") == sk,
              "keys kept in cluster.json")
        ports = [c.hostport(i)[1] for i in range(2)]
        check(st.get("cnode_ports", [])[:2] == ports, "C-node ports kept in cluster.json")
        status = c.local("status").stdout
        check(len(re.findall(r"^cnode \d 127\.0\.0\.1:\d+ running pid \d+$", status, re.M)) == 2,
              "status lists 2 running C-nodes:\n" + status)
        for i in range(2):
            for name in ("pid", "ready", "log"):
                check(os.path.exists(os.path.join(c.dir, "cnode%d" % i, name)),
                      "cnode%d/%s exists" % (i, name))

        c0, c1 = client(c, 0), client(c, 1)
        check(c0.put("/cli-bucket", b"").status == 200, "CreateBucket through C-node 0")
        check(c0.put("/cli-bucket/k", b"kept").status == 200, "PUT through C-node 0")
        r = c1.get("/cli-bucket/k")
        check(r.status == 200 and r.body == b"kept", "GET through C-node 1: %r" % r)

        c.kill("cnode", 1)
        status = c.local("status").stdout
        check(re.search(r"^cnode 1 \S+ stopped$", status, re.M) and "cnode 0" in status,
              "status after kill:\n" + status)
        check(not accepts("127.0.0.1", ports[1]), "killed C-node's port still accepts")
        c.start("cnode", 1)
        r = c1.get("/cli-bucket/k")
        check(r.status == 200 and r.body == b"kept", "GET through restarted C-node 1: %r" % r)
        bad = c.local("kill", "cnode", "2", check_rc=False)
        check(bad.returncode != 0, "kill of a C-node that does not exist must fail")

        c.down()
        status = c.local("status").stdout
        check(status.count("stopped") == 8 and "running" not in status,
              "status after down:\n" + status)
        check(not accepts("127.0.0.1", ports[0]), "C-node 0 still serving after down")
        c.up()  # no --cnodes: as before
        check(c.endpoints() == eps and c.credentials() == (ak, sk),
              "endpoints and keys after down/up: %s %s" % (c.endpoints(), c.credentials()))
        for i in range(2):
            r = client(c, i).get("/cli-bucket/k")
            check(r.status == 200 and r.body == b"kept", "GET after down/up via %d: %r" % (i, r))
        with open(os.path.join(c.dir, "cnode0", "log")) as f:
            starts = f.read().count("--- ")
        check(starts >= 2, "C-node log appended across restarts")
        log("cairn-local C-node interface behaves")


if __name__ == "__main__":
    main(test)
