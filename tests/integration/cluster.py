"""Helpers for integration tests: a local cluster driven through tools/cairn-local.

Tests are plain Python scripts (stdlib only) run by meson; each exits non-zero on the first
failed check.  Paths come from CAIRN_SRC and CAIRN_BUILD, which tests/meson.build sets.

S3 tests start C-nodes too (Cluster(cnodes=M)) and drive them with the Debian clients:
awscli (Cluster.aws), s3cmd (Cluster.s3cmd) and boto3 (Cluster.boto3_client; only under
/usr/bin/python3, which is why meson runs the S3 tests with that interpreter).

NFS tests drive the same C-nodes with libnfs: the nfs-cp / nfs-ls tools (Cluster.nfs_cp,
Cluster.nfs_ls) and nfscheck (tests/integration/nfscheck.c, Cluster.nfscheck), a libnfs
program that runs every NFSv3 procedure and its error cases.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("CAIRN_SRC", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BUILD = os.environ.get("CAIRN_BUILD", os.path.join(SRC, "build"))
LOCAL = os.path.join(SRC, "tools", "cairn-local")
CAIRNCTL = os.path.join(BUILD, "tools", "cairnctl")
NFSCHECK = os.path.join(BUILD, "tests", "integration", "nfscheck")
AWS = "/usr/bin/aws"
S3CMD = "/usr/bin/s3cmd"


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def clip(data, n=3000):
    """Client output for a failure message: text, at most n characters."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
    return text if len(text) <= n else text[:n] + "... (%d more characters)" % (len(text) - n)


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

    def __init__(self, dnodes=6, ec="4+2", frag_size=None, dev_size="1G", cnodes=0,
                 nfs_exports=None, netns=False, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="cairn-it-", dir=os.environ.get("CAIRN_TEST_TMP",
                                                                           "/var/tmp"))
        self.args = ["--dnodes", str(dnodes), "--ec", ec, "--dev-size", dev_size,
                     "--cnodes", str(cnodes)]
        if frag_size:
            self.args += ["--frag-size", str(frag_size)]
        if nfs_exports:
            self.args += ["--nfs-exports", nfs_exports]
        if netns:
            self.args += ["--netns"]  # each D-node on a network of its own: cut() and heal()
        self.args += list(extra_args)  # more `cairn-local up` options, e.g. --repair-interval
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

    def pause(self, kind, i):
        """SIGSTOP: the process holds its connections and answers nothing until resume()."""
        os.kill(self.pid(kind, i), signal.SIGSTOP)

    def resume(self, kind, i):
        os.kill(self.pid(kind, i), signal.SIGCONT)

    def cut(self, i):
        """Take D-node i's link down (a cluster made with netns=True): a partition."""
        self.local("cut", "dnode", str(i))

    def heal(self, i):
        self.local("heal", "dnode", str(i))

    def pid(self, kind, i):
        with open(os.path.join(self.dir, "%s%d" % (kind, i), "pid")) as f:
            return int(f.read().split()[0])

    def kill_now(self, kind, i):
        """kill -9 at once (cairn-local kill takes a Python start-up, ~0.1 s): for tests
        that time the kill against requests in flight.  Returns the pid."""
        pid = self.pid(kind, i)
        os.kill(pid, signal.SIGKILL)
        return pid

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

    def get(self, name, leader_wait_ms=None):
        """(returncode, data, stderr) of `cairnctl stripe get NAME -`; leader_wait_ms bounds
        the wait for a metadata shard that lost its majority."""
        opts = ["--leader-wait-ms", str(leader_wait_ms)] if leader_wait_ms else []
        p = self.ctl(*(opts + ["stripe", "get", name, "-"]))
        return p.returncode, p.stdout, p.stderr.decode(errors="replace")

    def logs(self):
        out = []
        for entry in sorted(os.listdir(self.dir)):
            path = os.path.join(self.dir, entry, "log")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    n = 40 if entry.startswith("cnode") else 15
                    out.append("--- %s\n%s" % (entry, "".join(f.readlines()[-n:])))
        return "\n".join(out)

    # ---- S3 (C-nodes) ----

    def endpoints(self):
        """The C-nodes' S3 endpoints, "http://127.0.0.1:PORT", in C-node order."""
        return self.env["S3_ENDPOINTS"].split()

    def endpoint(self, i=0):
        return self.endpoints()[i]

    def hostport(self, i=0):
        """(host, port) of C-node i, for raw HTTP."""
        hp = self.endpoint(i).split("://", 1)[1]
        host, port = hp.rsplit(":", 1)
        return host, int(port)

    def credentials(self):
        """(access key, secret key) of the admin user cairn-local created."""
        return self.env["S3_ACCESS_KEY"], self.env["S3_SECRET_KEY"]

    def region(self):
        return self.env.get("S3_REGION", "us-east-1")

    def aws_config(self):
        """An awscli config file: path-style addressing, the cluster's region."""
        path = os.path.join(self.dir, "aws-config")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write("[default]\nregion = %s\noutput = json\n"
                        "s3 =\n    addressing_style = path\n" % self.region())
        return path

    def aws_env(self, access_key=None, secret_key=None):
        """Environment for awscli (and boto3) with this cluster's credentials and nothing
        from the user's own AWS setup."""
        ak, sk = self.credentials()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({
            "AWS_ACCESS_KEY_ID": access_key or ak,
            "AWS_SECRET_ACCESS_KEY": secret_key or sk,
            "AWS_DEFAULT_REGION": self.region(),
            "AWS_REGION": self.region(),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": self.aws_config(),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.dir, "aws-no-credentials"),
            "AWS_PAGER": "",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
        })
        return env

    def aws(self, *args, node=0, input=None, timeout=300, env=None):
        """Run `aws ARGS --endpoint-url C-node` ; returns the CompletedProcess (bytes)."""
        argv = [AWS] + list(args) + ["--endpoint-url", self.endpoint(node)]
        return subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, env=env or self.aws_env())

    def aws_ok(self, *args, node=0, timeout=300):
        """Run aws and fail the test unless it succeeds; returns stdout parsed as JSON when it
        is JSON, else as text."""
        p = self.aws(*args, node=node, timeout=timeout)
        check(p.returncode == 0, "aws %s failed (%d): %s%s" % (
            " ".join(args), p.returncode, clip(p.stdout), clip(p.stderr)))
        out = p.stdout.decode()
        try:
            return json.loads(out) if out.strip() else {}
        except ValueError:
            return out

    def s3cmd_config(self, node=0):
        path = os.path.join(self.dir, "s3cfg%d" % node)
        if not os.path.exists(path):
            ak, sk = self.credentials()
            hp = self.endpoint(node).split("://", 1)[1]
            with open(path, "w") as f:
                f.write("[default]\naccess_key = %s\nsecret_key = %s\nhost_base = %s\n"
                        "host_bucket = %s\nbucket_location = %s\nuse_https = False\n"
                        "signature_v2 = False\ncheck_ssl_certificate = False\n"
                        "guess_mime_type = False\nhuman_readable_sizes = False\n"
                        "progress_meter = False\nmax_retries = 1\n" % (
                            ak, sk, hp, hp, self.region()))
        return path

    def s3cmd(self, *args, node=0, timeout=300):
        argv = [S3CMD, "-c", self.s3cmd_config(node)] + list(args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, env=env)

    def boto3_client(self, node=0, access_key=None, secret_key=None, empty_expect=False,
                     **config):
        """A boto3 S3 client for C-node node (path style, SigV4, no retries).

        Unless empty_expect, the client leaves "Expect: 100-continue" off requests with an
        empty body: botocore (boto/botocore#3755) misparses the next response on the same
        connection when a server answers such a request without a 100 Continue first, and
        stalls until its read timeout.  test_s3_boto3 checks the server side of that
        separately (empty_expect=True), so the other tests are not all held up by it."""
        import boto3  # only under /usr/bin/python3 (Debian's python3-boto3)
        from botocore.config import Config
        ak, sk = self.credentials()
        # total_max_attempts counts the first try (botocore's max_attempts counts retries).
        opts = {"signature_version": "s3v4", "s3": {"addressing_style": "path"},
                "retries": {"total_max_attempts": 1, "mode": "standard"},
                "connect_timeout": 10, "read_timeout": 120}
        opts.update(config)
        cfg = Config(**opts)
        client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint(node), region_name=self.region(),
            aws_access_key_id=access_key or ak, aws_secret_access_key=secret_key or sk,
            config=cfg)
        if not empty_expect:
            def no_empty_expect(request, **kw):
                if request.headers.get("Content-Length") in ("0", b"0"):
                    request.headers.pop("Expect", None)
            client.meta.events.register("before-send.s3", no_empty_expect)
        return client

    # ---- NFS (C-nodes) ----

    def nfs_url(self, path="/", node=0):
        """A libnfs URL for path (an export or a path below one; libnfs mounts the directory
        part and opens the last component) through C-node node."""
        host = self.env["NFS_HOST"]
        nfs = self.env["NFS_PORTS"].split()[node]
        mnt = self.env["MOUNT_PORTS"].split()[node]
        return "nfs://%s%s?version=3&nfsport=%s&mountport=%s" % (host, path, nfs, mnt)

    def nfscheck(self, *args, timeout=600, check_rc=True):
        """Run nfscheck ARGS; returns the CompletedProcess (text)."""
        p = subprocess.run([NFSCHECK] + [str(a) for a in args], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if check_rc:
            check(p.returncode == 0, "nfscheck %s failed (%d):\n%s" % (
                " ".join(str(a) for a in args), p.returncode, clip(p.stdout, 6000)))
        return p

    def nfs_cp(self, src, dst, timeout=300, check_rc=True):
        if not dst.startswith("nfs://") and os.path.exists(dst):
            os.unlink(dst)  # nfs-cp does not overwrite local files
        p = subprocess.run(["nfs-cp", src, dst], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if check_rc:
            check(p.returncode == 0, "nfs-cp %s %s failed (%d): %s" % (src, dst, p.returncode,
                                                                        clip(p.stdout)))
        return p

    def nfs_ls(self, url, timeout=120):
        p = subprocess.run(["nfs-ls", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        check(p.returncode == 0, "nfs-ls %s failed (%d): %s" % (url, p.returncode,
                                                                 clip(p.stdout)))
        return [line.split()[-1] for line in p.stdout.splitlines() if line.strip()]

    def __enter__(self):
        try:
            return self.up()
        except BaseException:
            # A cluster that failed to come up may have some processes running: stop them.
            self.down()
            print("cluster failed to start, kept in %s\n%s" % (self.dir, self.logs()),
                  file=sys.stderr)
            raise

    def __exit__(self, etype, value, tb):
        self.down()
        if etype is None and not os.environ.get("CAIRN_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("cluster kept in %s\n%s" % (self.dir, self.logs()), file=sys.stderr)
            if not os.environ.get("CAIRN_KEEP"):
                # Keep the logs, not the devices: failed runs must not fill the disk.
                for name in os.listdir(self.dir):
                    dev = os.path.join(self.dir, name, "dev")
                    if os.path.isfile(dev):
                        os.unlink(dev)
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
