"""Helpers for integration tests: a local cluster driven through tools/cairn-local.

Tests are plain Python scripts (stdlib only) run by meson; each exits non-zero on the first
failed check.  Paths come from CAIRN_SRC and CAIRN_BUILD, which tests/meson.build sets.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("CAIRN_SRC", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BUILD = os.environ.get("CAIRN_BUILD", os.path.join(SRC, "build"))
LOCAL = os.path.join(SRC, "tools", "cairn-local")
CAIRNCTL = os.path.join(BUILD, "tools", "cairnctl")


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def parse_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, value = line.split("=", 1)
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            env[name] = value
    return env


class Cluster:
    """A cluster in a fresh temporary directory; use as a context manager."""

    def __init__(self, dnodes=6, ec="4+2", frag_size=None, dev_size="1G"):
        self.dir = tempfile.mkdtemp(prefix="cairn-it-", dir=os.environ.get("CAIRN_TEST_TMP",
                                                                           "/var/tmp"))
        self.args = ["--dnodes", str(dnodes), "--ec", ec, "--dev-size", dev_size]
        if frag_size:
            self.args += ["--frag-size", str(frag_size)]
        self.env = None

    def local(self, *args, check_rc=True):
        p = subprocess.run([LOCAL] + list(args[:1]) + ["--dir", self.dir] + list(args[1:]),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=120)
        if check_rc and p.returncode:
            raise AssertionError("cairn-local %s failed (%d): %s%s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr))
        return p

    def up(self):
        self.local("up", *self.args)
        self.env = parse_env(os.path.join(self.dir, "cluster.env"))
        return self

    def down(self):
        self.local("down", check_rc=False)

    def kill(self, kind, i):
        self.local("kill", kind, str(i))

    def start(self, kind, i):
        self.local("start", kind, str(i))

    def ctl(self, *args, input=None, timeout=300):
        """Run cairnctl against this cluster; returns the CompletedProcess (bytes)."""
        return subprocess.run([CAIRNCTL, "-c", os.path.join(self.dir, "cluster.env")] +
                              list(args), input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)

    def put(self, name, data):
        # A private file per call: tests put from several threads at once.
        fd, path = tempfile.mkstemp(dir=self.dir, suffix=".in")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        p = self.ctl("stripe", "put", name, path)
        os.unlink(path)
        return p

    def get(self, name):
        """(returncode, data, stderr) of `cairnctl stripe get NAME -`."""
        p = self.ctl("stripe", "get", name, "-")
        return p.returncode, p.stdout, p.stderr.decode(errors="replace")

    def logs(self):
        out = []
        for entry in sorted(os.listdir(self.dir)):
            path = os.path.join(self.dir, entry, "log")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    out.append("--- %s\n%s" % (entry, "".join(f.readlines()[-15:])))
        return "\n".join(out)

    def __enter__(self):
        return self.up()

    def __exit__(self, etype, value, tb):
        self.down()
        if etype is None and not os.environ.get("CAIRN_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("cluster kept in %s\n%s" % (self.dir, self.logs()), file=sys.stderr)
        return False


def main(test):
    """Run test() and exit 0 or 1 with the failure on stderr."""
    t0 = time.monotonic()
    try:
        test()
    except AssertionError as e:
        print("FAIL: %s" % e, file=sys.stderr)
        sys.exit(1)
    log("PASS in %.1f s" % (time.monotonic() - t0))
