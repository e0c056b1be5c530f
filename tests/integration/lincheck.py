"""A linearizability checker for compare-and-set registers (Wing & Gong's search with Lowe's
memoisation, the algorithm of Porcupine and Knossos), for histories linclient writes.

A history is every operation's invocation and completion with times from one monotonic
clock.  It is linearizable if each operation can be given one instant between its invocation
and its completion at which it takes effect, such that the operations in instant order are a
legal run of one register per key: a read returns the value of the last write before it
(None if none), a compare-and-set with old value A and new value B succeeds exactly when the
register holds A and then holds B, a failed one finds another value.  Keys are independent
registers, and linearizability is local (Herlihy & Wing), so each key is checked alone.

An operation whose outcome is unknown ("info", or an invocation with no completion because
its process was killed) may take effect at any instant after its invocation, or never: it is
given a completion at the end of time, and its step always succeeds (a compare-and-set that
finds another value then is one that took no effect).  Operations that sent nothing ("none")
are dropped.

    python3 lincheck.py HISTORY.jsonl...     check, print a summary; exit 1 if not linearizable
    python3 lincheck.py --self-test          the checker against histories with known answers
"""
import json
import sys

INF = float("inf")


class Op:
    __slots__ = ("idx", "id", "key", "f", "a", "b", "inv", "ret", "status", "value")

    def __init__(self, idx, rec):
        self.idx = idx
        self.id = rec["id"]
        self.key = rec["k"]
        self.f = rec["f"]
        self.a = rec.get("a")
        self.b = rec.get("b")
        self.inv = rec["t"]
        self.ret = INF
        self.status = "info"
        self.value = None

    def __repr__(self):
        what = {"r": "read", "w": "write(%s)" % self.b,
                "cas": "cas(%s -> %s)" % (self.a, self.b)}[self.f]
        end = "" if self.ret == INF else " .. %.6f" % (self.ret / 1e9)
        res = " -> %r" % (self.value,) if self.f == "r" and self.status == "ok" else ""
        return "%s %s %s%s [%.6f%s]" % (self.id, what, self.status, res, self.inv / 1e9, end)


def load(paths):
    """{key: [Op]} from history files; completions are matched to invocations by id."""
    ops = {}
    order = []
    for path in paths:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    # A process killed mid-write leaves at most its last line torn.
                    print("lincheck: %s:%d: torn line ignored" % (path, n), file=sys.stderr)
                    continue
                if rec["e"] == "inv":
                    if rec["id"] in ops:
                        raise ValueError("%s:%d: operation %s invoked twice" % (path, n,
                                                                                rec["id"]))
                    op = Op(len(order), rec)
                    ops[op.id] = op
                    order.append(op)
                else:
                    op = ops.get(rec["id"])
                    if op is None or op.status != "info" or op.ret != INF:
                        raise ValueError("%s:%d: completion of %s without its invocation" % (
                            path, n, rec["id"]))
                    op.status = rec["e"]
                    if op.status != "info":
                        op.ret = rec["t"]
                    op.value = rec.get("v")
    by_key = {}
    for op in order:
        if op.status == "none" or (op.f == "r" and op.status == "info"):
            continue  # changed nothing and saw nothing
        if op.status == "fail" and op.f != "cas":
            raise ValueError("%s: only a compare-and-set can fail" % op.id)
        by_key.setdefault(op.key, []).append(op)
    return by_key


def step(state, op):
    """(legal, new state) of op taking effect on a register holding state."""
    if op.f == "r":
        if op.status == "info":
            return True, state
        return op.value == state, state
    if op.f == "w":
        return True, op.b
    # compare-and-set
    if op.status == "ok":
        return (True, op.b) if state == op.a else (False, state)
    if op.status == "fail":
        return state != op.a, state
    return True, (op.b if state == op.a else state)  # unknown outcome: either


class Entry:
    __slots__ = ("op", "call", "match", "prev", "next")

    def __init__(self, op, call):
        self.op = op
        self.call = call
        self.match = None
        self.prev = self.next = None


def check_key(ops):
    """(True, None) if ops (one key's) are linearizable, else (False, explanation)."""
    events = []
    for op in ops:
        c, r = Entry(op, True), Entry(op, False)
        c.match = r
        events.append((op.inv, 0, c))
        events.append((op.ret, 1, r))
    # At equal times a call sorts first: the two operations may then overlap (permissive).
    events.sort(key=lambda e: (e[0], e[1]))
    head = Entry(None, False)
    prev = head
    for _, _, e in events:
        prev.next = e
        e.prev = prev
        prev = e

    def lift(e):
        e.prev.next = e.next
        if e.next:
            e.next.prev = e.prev
        r = e.match
        r.prev.next = r.next
        if r.next:
            r.next.prev = r.prev

    def unlift(e):
        r = e.match
        r.prev.next = r
        if r.next:
            r.next.prev = r
        e.prev.next = e
        if e.next:
            e.next.prev = e

    state = None
    linearized = 0
    cache = set()
    stack = []
    entry = head.next
    best, stuck = 0, None
    while head.next is not None:
        if entry.call:
            ok, new = step(state, entry.op)
            if ok:
                lin = linearized | (1 << entry.op.idx)
                if (lin, new) not in cache:
                    cache.add((lin, new))
                    stack.append((entry, state))
                    state, linearized = new, lin
                    lift(entry)
                    if len(stack) > best:
                        best, stuck = len(stack), None
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if stuck is None and len(stack) == best:
                stuck = (entry.op, state, [e.op for e, _ in stack[-8:]])
            if not stack:
                return False, explain(best, stuck)
            entry, state = stack.pop()
            linearized &= ~(1 << entry.op.idx)
            unlift(entry)
            entry = entry.next
    return True, None


def explain(best, stuck):
    if stuck is None:
        return "no operation can be linearized first"
    op, state, last = stuck
    lines = ["the longest legal order found holds %d operations; it ends:" % best]
    lines += ["    %r" % o for o in last]
    lines.append("with the register holding %r; then this operation had to take effect "
                 "and cannot:" % (state,))
    lines.append("    %r" % op)
    return "\n".join(lines)


def check(by_key):
    """(ok, report lines)."""
    ok = True
    lines = []
    for key in sorted(by_key):
        good, why = check_key(by_key[key])
        n = len(by_key[key])
        info = sum(1 for o in by_key[key] if o.status == "info")
        lines.append("key %s: %d operations (%d with unknown outcome): %s" % (
            key, n, info, "linearizable" if good else "NOT linearizable"))
        if not good:
            ok = False
            lines.append(why)
    return ok, lines


# ---- self-test: histories whose answer is known ----

def _hist(spec):
    """Ops from (id, f, a, b, inv, ret, status, value) tuples, ret None = unknown outcome."""
    recs = []
    for i, (f, a, b, inv, ret, status, value) in enumerate(spec):
        rid = "t.%d" % i
        recs.append(("inv", {"e": "inv", "id": rid, "k": 0, "f": f, "a": a, "b": b, "t": inv}))
        if ret is not None:
            recs.append(("end", {"e": status, "id": rid, "v": value, "t": ret}))
    ops = {}
    out = []
    for kind, rec in recs:
        if kind == "inv":
            op = Op(len(out), rec)
            ops[rec["id"]] = op
            out.append(op)
        else:
            op = ops[rec["id"]]
            op.status = rec["e"]
            if op.status != "info":
                op.ret = rec["t"]
            op.value = rec["v"]
    return [o for o in out if o.status != "none"]


def self_test():
    cases = [
        ("sequential write then read", True, [
            ("w", None, "x", 0, 1, "ok", None), ("r", None, None, 2, 3, "ok", "x")]),
        ("stale read after an acknowledged write", False, [
            ("w", None, "x", 0, 1, "ok", None), ("w", None, "y", 2, 3, "ok", None),
            ("r", None, None, 4, 5, "ok", "x")]),
        ("concurrent write may be seen or not", True, [
            ("w", None, "x", 0, 1, "ok", None), ("w", None, "y", 2, 6, "ok", None),
            ("r", None, None, 3, 4, "ok", "x"), ("r", None, None, 5, 7, "ok", "y")]),
        ("reads see a value come back", False, [
            ("w", None, "x", 0, 1, "ok", None), ("w", None, "y", 2, 9, "ok", None),
            ("r", None, None, 3, 4, "ok", "y"), ("r", None, None, 5, 6, "ok", "x")]),
        ("two compare-and-sets from one value both succeed", False, [
            ("w", None, "x", 0, 1, "ok", None), ("cas", "x", "a", 2, 5, "ok", None),
            ("cas", "x", "b", 3, 6, "ok", None)]),
        ("lost acknowledged update", False, [
            ("cas", None, "a", 0, 1, "ok", None), ("cas", "a", "b", 2, 3, "ok", None),
            ("r", None, None, 4, 5, "ok", "a")]),
        ("failed compare-and-set that should have won", False, [
            ("w", None, "x", 0, 1, "ok", None), ("cas", "x", "b", 2, 3, "fail", None)]),
        ("unknown write seen later", True, [
            ("w", None, "x", 0, 1, "ok", None), ("w", None, "y", 2, None, "info", None),
            ("r", None, None, 10, 11, "ok", "x"), ("r", None, None, 12, 13, "ok", "y")]),
        ("unknown write seen, then gone", False, [
            ("w", None, "x", 0, 1, "ok", None), ("w", None, "y", 2, None, "info", None),
            ("r", None, None, 10, 11, "ok", "y"), ("r", None, None, 12, 13, "ok", "x")]),
        ("unknown compare-and-set never seen", True, [
            ("w", None, "x", 0, 1, "ok", None), ("cas", "x", "y", 2, None, "info", None),
            ("r", None, None, 10, 11, "ok", "x")]),
        ("read of a value never written", False, [
            ("w", None, "x", 0, 1, "ok", None), ("r", None, None, 2, 3, "ok", "z")]),
        ("read before any write sees nothing", True, [
            ("r", None, None, 0, 1, "ok", None), ("cas", None, "a", 2, 3, "ok", None),
            ("r", None, None, 4, 5, "ok", "a")]),
    ]
    bad = 0
    for name, want, spec in cases:
        got, why = check_key(_hist(spec))
        status = "ok" if got == want else "WRONG"
        bad += got != want
        print("self-test %-50s want %-5s got %-5s %s" % (name, want, got, status))
    # A long sequential history with many threads' worth of overlap stays fast.
    spec = []
    t = 0
    for i in range(3000):
        spec.append(("w", None, "v%d" % i, t, t + 5, "ok", None))
        spec.append(("r", None, None, t + 1, t + 6, "ok", "v%d" % i))
        t += 4
    got, _ = check_key(_hist(spec))
    print("self-test %-50s want %-5s got %-5s %s" % ("6000 overlapping operations", True, got,
                                                    "ok" if got else "WRONG"))
    bad += not got
    return bad == 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return 0 if self_test() else 1
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    ok, lines = check(load(argv[1:]))
    for line in lines:
        print(line)
    print("linearizable" if ok else "NOT LINEARIZABLE")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
