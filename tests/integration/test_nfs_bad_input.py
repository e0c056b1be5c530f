#!/usr/bin/python3
"""Bad input to the NFS and MOUNT ports (invariant 7): malformed records and calls get an RPC
error or a closed connection, never a crash, a hang or a changed file.  Raw sockets, so every
byte is ours: record marks announcing too much, empty and cut records, replies instead of
calls, RPC version 3, credentials with 17 groups or a foreign flavor, unknown programs,
versions and procedures, arguments cut short, guessed and edited file handles.  Afterwards
the C-node still serves, and a file written before reads back unchanged."""
import os
import random
import socket
import struct

from cluster import Cluster, check, log, main

NFS_PROG, MOUNT_PROG = 100003, 100005


def u32(v):
    return struct.pack(">I", v)


def opaque(b):
    return u32(len(b)) + b + b"\0" * (-len(b) % 4)


def auth_sys(uid=0, gid=0, gids=(), machine=b"test"):
    body = u32(1) + opaque(machine) + u32(uid) + u32(gid) + u32(len(gids)) + b"".join(
        u32(g) for g in gids)
    return u32(1) + opaque(body)


AUTH_NONE = u32(0) + u32(0)


def call(xid, prog, vers, proc, args=b"", cred=None, rpcvers=2):
    return (u32(xid) + u32(0) + u32(rpcvers) + u32(prog) + u32(vers) + u32(proc) +
            (cred if cred is not None else auth_sys()) + AUTH_NONE + args)


def record(msg):
    return u32(0x80000000 | len(msg)) + msg


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)

    def send(self, data):
        self.s.sendall(data)

    def recv_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                return None
            out += chunk
        return out

    def reply(self):
        """The next reply record, or None if the server closed the connection."""
        msg = b""
        while True:
            mark = self.recv_exact(4)
            if mark is None:
                return None
            (m,) = struct.unpack(">I", mark)
            frag = self.recv_exact(m & 0x7fffffff)
            if frag is None:
                return None
            msg += frag
            if m & 0x80000000:
                return msg

    def closed(self):
        try:
            return self.s.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            return True

    def close(self):
        self.s.close()


def parse_reply(msg):
    """(xid, kind, detail): kind "accepted" with accept_stat, "denied" with (reject, stat)."""
    xid, mtype, rstat = struct.unpack(">III", msg[:12])
    check(mtype == 1, "not a reply: %r" % msg[:16])
    if rstat == 0:
        flav, vlen = struct.unpack(">II", msg[12:20])
        off = 20 + vlen + (-vlen % 4)
        (astat,) = struct.unpack(">I", msg[off:off + 4])
        return xid, "accepted", astat, msg[off + 4:]
    rej, what = struct.unpack(">II", msg[12:20])
    return xid, "denied", (rej, what), b""


def expect(conn, req, kind, detail, what):
    conn.send(record(req))
    r = conn.reply()
    check(r is not None, "%s: connection closed instead of an RPC error" % what)
    xid, k, d, body = parse_reply(r)
    check(xid == struct.unpack(">I", req[:4])[0], "%s: wrong xid" % what)
    check((k, d) == (kind, detail), "%s: got %s %s, want %s %s" % (what, k, d, kind, detail))
    log("ok   %s -> %s %s" % (what, kind, detail))
    return body


def expect_closed(port, data, what):
    c = Conn(port)
    c.send(data)
    check(c.closed() or c.reply() is None, "%s: connection not closed" % what)
    c.close()
    log("ok   %s -> connection closed" % what)


def mount_root(port):
    c = Conn(port)
    body = expect(c, call(1, MOUNT_PROG, 3, 1, opaque(b"/")), "accepted", 0, "MNT /")
    (st,) = struct.unpack(">I", body[:4])
    check(st == 0, "MNT / status %d" % st)
    (n,) = struct.unpack(">I", body[4:8])
    c.close()
    return body[8:8 + n]


def test():
    with Cluster(dnodes=6, ec="4+2", cnodes=1) as c:
        nfs = int(c.env["NFS_PORTS"].split()[0])
        mnt = int(c.env["MOUNT_PORTS"].split()[0])
        data = random.Random(5).randbytes(300000)
        src = os.path.join(c.dir, "before")
        with open(src, "wb") as f:
            f.write(data)
        c.nfs_cp(src, c.nfs_url("//before"))
        root = mount_root(mnt)
        check(len(root) == 32, "root handle of %d bytes" % len(root))

        # Framing: too big, empty, a call cut short, trash.
        expect_closed(nfs, u32(0x80000000 | (64 << 20)) + b"x" * 100,
                      "record mark announcing 64 MiB")
        expect_closed(nfs, u32(0x00000000 | (2 << 20)) + b"y" * 1000 +
                      u32(0x80000000 | (2 << 20)), "two fragments summing past the limit")
        conn = Conn(nfs)
        conn.send(record(b""))            # empty record: dropped, connection stays usable
        conn.send(record(b"\x00\x00\x00\x07"))  # an xid and nothing else: dropped
        conn.send(record(u32(9) + u32(1) + b"\0" * 16))  # a reply, not a call: dropped
        expect(conn, call(10, NFS_PROG, 3, 0), "accepted", 0, "NULL after junk records")

        # Calls the server cannot take.
        expect(conn, call(11, NFS_PROG, 3, 0, rpcvers=3), "denied", (0, 2), "RPC version 3")
        expect(conn, call(12, NFS_PROG, 3, 0, cred=auth_sys(gids=range(17))), "denied",
               (1, 1), "AUTH_SYS with 17 groups")
        expect(conn, call(13, NFS_PROG, 3, 0, cred=u32(1) + opaque(b"\0" * 7)), "denied",
               (1, 1), "AUTH_SYS body cut short")
        expect(conn, call(14, NFS_PROG, 3, 0, cred=u32(6) + opaque(b"gss")), "denied",
               (1, 5), "RPCSEC_GSS credential")
        expect(conn, call(15, 100099, 3, 0), "accepted", 1, "unknown program")
        body = expect(conn, call(16, NFS_PROG, 4, 0), "accepted", 2, "NFS version 4")
        check(struct.unpack(">II", body[:8]) == (3, 3), "PROG_MISMATCH range %r" % body[:8])
        expect(conn, call(17, NFS_PROG, 3, 99), "accepted", 3, "procedure 99")
        expect(conn, call(18, NFS_PROG, 3, 1, b"\0\0"), "accepted", 4, "GETATTR args cut short")
        expect(conn, call(19, NFS_PROG, 3, 7, opaque(root) + b"\0" * 8 + u32(4096) + u32(0) +
                          u32(100)), "accepted", 4, "WRITE with fewer bytes than its count")
        expect(conn, call(20, NFS_PROG, 3, 1, opaque(root) + b"extra"), "accepted", 0,
               "GETATTR with trailing bytes (ignored, as RFC 1813 servers do)")

        # Handles: guessed, edited, cut; each NFS3ERR_BADHANDLE (10001).
        rnd = random.Random(3)
        edited = bytearray(root)
        edited[12] ^= 0x40
        for what, fh in (("random handle", rnd.randbytes(32)), ("edited handle", bytes(edited)),
                         ("cut handle", root[:20]), ("empty handle", b""),
                         ("handle of 64 bytes", root + root)):
            body = expect(conn, call(30, NFS_PROG, 3, 1, opaque(fh)), "accepted", 0,
                          "GETATTR " + what)
            (st,) = struct.unpack(">I", body[:4])
            check(st == 10001, "GETATTR %s: status %d, want NFS3ERR_BADHANDLE" % (what, st))
        body = expect(conn, call(31, NFS_PROG, 3, 1, u32(1000)), "accepted", 4,
                      "handle length 1000")

        # MOUNT: paths that are not there, or not paths.
        mc = Conn(mnt)
        for what, path, want in (("MNT of a missing path", b"/no/such/dir", 2),
                                 ("MNT with ..", b"/../etc", 22)):
            body = expect(mc, call(40, MOUNT_PROG, 3, 1, opaque(path)), "accepted", 0, what)
            (st,) = struct.unpack(">I", body[:4])
            check(st == want, "%s: status %d, want %d" % (what, st, want))
        expect(mc, call(41, MOUNT_PROG, 3, 1, u32(5000)), "accepted", 4, "MNT path of 5000 bytes")
        expect(mc, call(42, NFS_PROG, 3, 0), "accepted", 1, "NFS program on the MOUNT port")
        mc.close()
        conn.close()

        # Random garbage records on fresh connections, each followed by a NULL call: the
        # NULL is answered (after whatever the junk got) or the connection is closed; never
        # a crash or a hang.
        answered = closed = 0
        for i in range(200):
            g = Conn(nfs)
            junk = rnd.randbytes(rnd.randrange(0, 200))
            if rnd.random() < 0.5:
                junk = call(100 + i, NFS_PROG, 3, rnd.randrange(0, 22)) + junk
            g.send(record(junk) + record(call(7777, NFS_PROG, 3, 0)))
            while True:
                r = g.reply()
                if r is None:
                    closed += 1
                    break
                if r[:4] == u32(7777):
                    answered += 1
                    break
            g.close()
        log("ok   200 random records (NULL answered after %d, connection closed by %d)" % (
            answered, closed))

        os.kill(c.pid("cnode", 0), 0)  # still running
        back = os.path.join(c.dir, "after")
        c.nfs_cp(c.nfs_url("//before"), back)
        with open(back, "rb") as f:
            check(f.read() == data, "the file written before reads back changed")
        log("ok   C-node alive, earlier file intact")


if __name__ == "__main__":
    main(test)
