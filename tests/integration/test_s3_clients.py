#!/usr/bin/python3
"""S3 through the clients people use, high-level commands: awscli `s3` (mb, cp up and down
from 0 B to more than 100 MiB so that uploads and downloads go multipart and ranged, ls with
prefixes, sync of a tree both ways, rm --recursive, rb) and s3cmd (mb, put, get, ls, del,
rb).  Every byte is compared by SHA-256; ETags are checked against the S3 rules (MD5 of the
body, or MD5 of the part MD5s with "-N" for multipart)."""
import hashlib
import os
import random
import shutil
import tempfile

from cluster import Cluster, check, clip, log, main
from s3util import file_sha256, multipart_etag_of_file, write_random

MiB = 1 << 20
# awscli's defaults: multipart_threshold = multipart_chunksize = 8 MiB.
AWS_PART = 8 * MiB
SIZES = {"zero": 0, "one": 1, "five": 5 * MiB, "twenty": 20 * MiB, "big": 110 * MiB + 12345}


def parse_ls(text):
    """`aws s3 ls` output -> (prefixes, {key: size})."""
    prefixes, objs = [], {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("PRE "):
            prefixes.append(line.lstrip()[4:])
            continue
        date, tm, size, key = line.split(None, 3)
        objs[key] = int(size)
    return prefixes, objs


def ls(c, *args):
    """aws s3 ls; an empty listing exits 1 with no output (awscli's way), which is fine."""
    p = c.aws("s3", "ls", *args)
    out = p.stdout.decode()
    check(p.returncode == 0 or (p.returncode == 1 and not out.strip() and
                                not p.stderr.strip()),
          "aws s3 ls %s failed (%d): %s %s" % (" ".join(args), p.returncode, out,
                                               p.stderr.decode(errors="replace")))
    return parse_ls(out)


def aws_text(c, *args):
    """Run aws, fail unless it succeeds, return its stdout as text."""
    p = c.aws(*args, timeout=600)
    check(p.returncode == 0, "aws %s failed (%d): %s%s" % (
        " ".join(args), p.returncode, clip(p.stdout), clip(p.stderr)))
    return p.stdout.decode()


def head(c, bucket, key):
    return c.aws_ok("s3api", "head-object", "--bucket", bucket, "--key", key)


def make_tree(root, rnd):
    """A directory tree with nested folders, empty files and awkward names; returns
    {relative path: sha256}."""
    files = {
        "top.txt": 10,
        "empty.bin": 0,
        "a/one.bin": 4096,
        "a/b/two.bin": 300000,
        "a/b/c/three.bin": 1,
        "a/b/c/d/e/deep.bin": 70000,
        "with space.txt": 33,
        "plus+sign=eq&amp.txt": 44,
        "unicod\u00e9/\u00fcml\u00e4ut \u65e5\u672c.txt": 55,
        "many/f%02d.dat" % 0: 5,
    }
    for i in range(1, 25):
        files["many/f%02d.dat" % i] = rnd.randrange(0, 20000)
    files["large/nine.bin"] = 9 * MiB  # multipart inside sync
    digests = {}
    for rel, size in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        digests[rel] = write_random(path, size)
    return digests


def tree_digests(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            path = os.path.join(d, n)
            out[os.path.relpath(path, root)] = file_sha256(path)
    return out


def test_awscli(c, work):
    rnd = random.Random(11)
    c.aws_ok("s3", "mb", "s3://cli")
    p = c.aws("s3", "ls")
    check(p.returncode == 0 and " cli" in p.stdout.decode(), "s3 ls lists bucket cli: %s" %
          p.stdout)

    # cp up and down, every size; the ETag says whether it went multipart.
    up = os.path.join(work, "up")
    down = os.path.join(work, "down")
    os.makedirs(up)
    os.makedirs(down)
    digests = {}
    for name, size in SIZES.items():
        path = os.path.join(up, name)
        digests[name] = write_random(path, size)
        c.aws_ok("s3", "cp", "--only-show-errors", "--no-progress", path,
                 "s3://cli/files/%s" % name, timeout=600)
        h = head(c, "cli", "files/" + name)
        check(h.get("ContentLength") == size, "head files/%s: ContentLength %s, want %d" % (
            name, h.get("ContentLength"), size))
        if size >= AWS_PART:
            want = multipart_etag_of_file(path, AWS_PART)
        else:
            with open(path, "rb") as f:
                want = '"%s"' % hashlib.md5(f.read()).hexdigest()
        check(h.get("ETag") == want, "ETag of files/%s (%d bytes): %s, want %s" % (
            name, size, h.get("ETag"), want))
        log("cp up %s (%d bytes), ETag %s" % (name, size, h.get("ETag")))
    for name, size in SIZES.items():
        out = os.path.join(down, name)
        c.aws_ok("s3", "cp", "--only-show-errors", "--no-progress", "s3://cli/files/%s" % name,
                 out, timeout=600)
        check(os.path.getsize(out) == size, "cp down %s: %d bytes, want %d" % (
            name, os.path.getsize(out), size))
        check(file_sha256(out) == digests[name], "cp down %s: content differs" % name)
    log("cp down: all %d files identical" % len(SIZES))
    os.unlink(os.path.join(up, "big"))
    os.unlink(os.path.join(down, "big"))

    # cp of a remote object to another key (server-side copy, multipart-sized source).
    c.aws_ok("s3", "cp", "--only-show-errors", "s3://cli/files/twenty", "s3://cli/copy/twenty")
    out = os.path.join(down, "twenty.copy")
    c.aws_ok("s3", "cp", "--only-show-errors", "s3://cli/copy/twenty", out)
    check(os.path.exists(out) and file_sha256(out) == digests["twenty"],
          "s3 cp s3->s3 copy differs")

    # ls: prefixes, partial names, recursive.
    prefixes, objs = ls(c, "s3://cli/")
    check(sorted(prefixes) == ["copy/", "files/"] and not objs,
          "ls s3://cli/: prefixes %s objects %s" % (prefixes, objs))
    prefixes, objs = ls(c, "s3://cli/files/")
    check(not prefixes and objs == SIZES, "ls s3://cli/files/: %s %s" % (prefixes, objs))
    _, objs = ls(c, "s3://cli/files/t")
    check(sorted(objs) == ["twenty"], "ls s3://cli/files/t: %s" % objs)
    _, objs = ls(c, "s3://cli/files/nothing-here")
    check(not objs, "ls of a prefix that matches nothing: %s" % objs)
    _, objs = ls(c, "s3://cli", "--recursive")
    want = {"files/" + k: v for k, v in SIZES.items()}
    want["copy/twenty"] = SIZES["twenty"]
    check(objs == want, "ls --recursive: %s, want %s" % (objs, want))
    _, objs = ls(c, "s3://cli/fi", "--recursive")
    check(sorted(objs) == sorted("files/" + k for k in SIZES), "ls s3://cli/fi --recursive: %s"
          % objs)
    log("ls with prefixes and --recursive as expected")

    # sync a tree up, back down, and again (nothing to do), then changes and --delete.
    tree = os.path.join(work, "tree")
    tree_d = make_tree(tree, rnd)
    c.aws_ok("s3", "sync", "--only-show-errors", "--no-progress", tree, "s3://cli/tree/",
             timeout=600)
    _, objs = ls(c, "s3://cli/tree/", "--recursive")
    check(sorted(objs) == sorted("tree/" + k for k in tree_d),
          "after sync up, keys %s want %s" % (sorted(objs), sorted(tree_d)))
    back = os.path.join(work, "back")
    c.aws_ok("s3", "sync", "--only-show-errors", "--no-progress", "s3://cli/tree/", back,
             timeout=600)
    got = tree_digests(back)
    check(got == tree_d, "sync down differs: missing %s extra %s different %s" % (
        sorted(set(tree_d) - set(got)), sorted(set(got) - set(tree_d)),
        sorted(k for k in tree_d if k in got and got[k] != tree_d[k])))
    log("sync up and down: %d files identical" % len(tree_d))

    again = aws_text(c, "s3", "sync", "--no-progress", tree, "s3://cli/tree/")
    check(not again.strip(), "second sync of an unchanged tree transferred: %s" % again)
    again = aws_text(c, "s3", "sync", "--no-progress", "s3://cli/tree/", back)
    check(not again.strip(), "second sync down of an unchanged tree: %s" % again)

    tree_d["a/b/two.bin"] = write_random(os.path.join(tree, "a/b/two.bin"), 123457)
    os.makedirs(os.path.join(tree, "new"))
    tree_d["new/file.bin"] = write_random(os.path.join(tree, "new", "file.bin"), 2222)
    os.unlink(os.path.join(tree, "top.txt"))
    del tree_d["top.txt"]
    out = aws_text(c, "s3", "sync", "--no-progress", "--delete", tree, "s3://cli/tree/")
    lines = sorted(l.split(":")[0] + ": " + l.rsplit("/tree/", 1)[-1]
                   for l in out.splitlines() if l.strip())
    check(lines == ["delete: top.txt", "upload: a/b/two.bin", "upload: new/file.bin"],
          "sync --delete after changes did: %s" % lines)
    shutil.rmtree(back)
    c.aws_ok("s3", "sync", "--only-show-errors", "--no-progress", "s3://cli/tree/", back)
    got = tree_digests(back)
    check(got == tree_d, "sync down after changes differs: %s vs %s" % (sorted(got),
                                                                         sorted(tree_d)))
    log("sync of changes with --delete as expected")

    # rm --recursive of a prefix leaves the rest; the prefix disappears from listings.
    c.aws_ok("s3", "rm", "--only-show-errors", "--recursive", "s3://cli/tree/")
    _, objs = ls(c, "s3://cli/tree/", "--recursive")
    check(not objs, "objects left after rm --recursive: %s" % sorted(objs))
    prefixes, objs = ls(c, "s3://cli/")
    check(sorted(prefixes) == ["copy/", "files/"], "prefixes after rm --recursive: %s" %
          prefixes)
    _, objs = ls(c, "s3://cli/files/")
    check(objs == SIZES, "rm --recursive of tree/ touched files/: %s" % objs)

    p = c.aws("s3", "rb", "s3://cli")
    check(p.returncode != 0 and b"BucketNotEmpty" in p.stderr,
          "rb of a non-empty bucket: rc %d %s" % (p.returncode, p.stderr))
    c.aws_ok("s3", "rm", "--only-show-errors", "--recursive", "s3://cli/")
    c.aws_ok("s3", "rb", "s3://cli")
    p = c.aws("s3", "ls")
    check(p.returncode == 0 and " cli\n" not in p.stdout.decode(),
          "bucket cli still listed after rb: %s" % p.stdout)
    log("rm --recursive and rb as expected")


def test_s3cmd(c, work):
    def ok(*args):
        p = c.s3cmd(*args)
        check(p.returncode == 0, "s3cmd %s failed (%d): %s %s" % (
            " ".join(args), p.returncode, clip(p.stdout), clip(p.stderr)))
        return p.stdout.decode()

    b = "s3://s3cmd-bucket"
    ok("mb", b)
    check(b in ok("ls"), "s3cmd ls lists %s" % b)
    files = {}
    for name, size in (("small", 1000), ("zero", 0), ("multi", 20 * MiB + 7)):
        path = os.path.join(work, "sc-" + name)
        files[name] = (size, write_random(path, size))
        ok("put", path, "%s/dir/%s" % (b, name))  # s3cmd: 15 MiB parts, so "multi" has 2
    listing = ok("ls", b + "/dir/")
    for name, (size, _) in files.items():
        line = [l for l in listing.splitlines() if l.endswith("%s/dir/%s" % (b, name))]
        check(len(line) == 1 and int(line[0].split()[2]) == size,
              "s3cmd ls shows %s with %d bytes: %s" % (name, size, listing))
    top = ok("ls", b + "/")
    check("DIR" in top and b + "/dir/" in top, "s3cmd ls %s/ shows the dir/ prefix: %s" % (
        b, top))
    for name, (size, digest) in files.items():
        out = os.path.join(work, "sc-got-" + name)
        ok("get", "--force", "%s/dir/%s" % (b, name), out)
        check(os.path.exists(out) and os.path.getsize(out) == size and
              file_sha256(out) == digest, "s3cmd get %s differs" % name)
    ok("del", b + "/dir/small")
    listing = ok("ls", b + "/dir/")
    check(b + "/dir/small" not in listing and b + "/dir/multi" in listing,
          "after s3cmd del: %s" % listing)
    p = c.s3cmd("get", "--force", b + "/dir/small", os.path.join(work, "gone"))
    check(p.returncode != 0, "s3cmd get of a deleted object succeeded")
    ok("del", b + "/dir/zero", b + "/dir/multi")
    ok("rb", b)
    check(b not in ok("ls"), "bucket gone after s3cmd rb")
    log("s3cmd mb/put/get/ls/del/rb as expected")


def test():
    with Cluster(dnodes=6, ec="4+2", cnodes=1, dev_size="2G") as c:
        work = tempfile.mkdtemp(dir=c.dir, prefix="work-")
        test_awscli(c, work)
        test_s3cmd(c, work)
        shutil.rmtree(work)


if __name__ == "__main__":
    main(test)
