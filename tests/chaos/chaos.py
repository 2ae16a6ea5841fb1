#!/usr/bin/env python3
"""chaos.py: a mixed workload through the real stack under a seeded fault schedule.

Drives orders (1 to 5 items over a few scarce products), duplicates, reordered
and stale `order.status.update`s (with and without `expected_version`),
cancellations before and after payment, payment deadlines, partial and full
returns, a few malformed records, and orders naming a "late" product that the
harness inserts seconds later (the workers run with parking on, so those
orders wait parked and are replayed) through the three workers, while it
injects faults from a schedule drawn from --seed:

  kill            SIGKILL of a worker process at a random moment
  failpoint       a worker restarted with ORDERFLOW_FAILPOINTS=<point>@<n>; it
                  kills itself there (crash-after-commit, crash-after-produce,
                  crash-in-sweep, crash-in-deadline-scan)
  broker-kill     SIGKILL of the Kafka broker, then `ops/stack up` starts it
  broker-pause    SIGSTOP of the broker for 3 to 12 s, then SIGCONT
  pg-crash        immediate shutdown of PostgreSQL (SIGQUIT), then `ops/stack up`
  pg-terminate    pg_terminate_backend() of every client session of the run's
                  database (the workers' connections; not autovacuum's)
  pg-outage       PostgreSQL down for longer than max.poll.interval.ms
  scale           1 to 3 replicas of a worker (a rebalance per change)
  dup-burst       already published events sent again, shuffled

At the end every replica is running, the faults stop, and the run waits until
every order has reached the status its plan leads to and the outbox and the
parked keys are empty;
then the workers stop (SIGTERM, exit 0 expected) and check.py runs the
invariant checker. Prints faults by kind, orders by final status, and the
invariant table; exits 1 on any violation.

Needs the environment of a stack (ctest's integration environment, or the one
tests/chaos/run sets up): ORDERFLOW_SOURCE_DIR, ORDERFLOW_BUILD_DIR (built with
-DORDERFLOW_FAILPOINTS=ON), ORDERFLOW_STACK_DIR, KAFKA_BOOTSTRAP_SERVERS,
PGHOST, PGPORT, PGUSER.
"""
import argparse
import collections
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

SRC = os.environ.get("ORDERFLOW_SOURCE_DIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("ORDERFLOW_BUILD_DIR", os.path.join(SRC, "build"))
STACK_DIR = os.environ.get("ORDERFLOW_STACK_DIR", os.path.join(SRC, ".stack"))
BOOT = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:29092")
PGHOST = os.environ.get("PGHOST", "127.0.0.1")
PGPORT = os.environ.get("PGPORT", "25432")
PGUSER = os.environ.get("PGUSER", "orderflow")

WORKERS = {"oc": "order-created", "os": "order-status", "rr": "return-requested"}
POINTS = {  # failpoint: (workers it can fire in, largest pass number drawn)
    "crash-after-commit": (("oc", "os", "rr"), 40),
    "crash-after-produce": (("oc", "os", "rr"), 200),
    "crash-in-sweep": (("oc", "os", "rr"), 1),
    "crash-in-deadline-scan": (("os",), 1),
}
PRODUCTS = [("p-%d" % i, 100 * i + 99) for i in range(1, 9)]
CUSTOMERS = ["c-%d" % i for i in range(1, 6)]
# Plans: what upstream does with an order once it is CONFIRMED, and weights.
PLANS = [("unpaid", 8), ("cancel_confirmed", 8), ("cancel_paid", 9), ("deliver", 35),
         ("return_full", 15), ("return_partial", 15), ("return_twice", 10)]
RESTING = {"REJECTED", "CANCELLED", "DELIVERED", "RETURNED", "PARTIALLY_RETURNED"}
# Late products: an order (--late-share of them) names one that does not exist
# yet, so order-created parks it (UNKNOWN_PRODUCT); the harness inserts it 2 to
# 10 s later and the order is replayed. Up to LATE_GROUP orders share one.
LATE_PRICE = 150
LATE_GROUP = 3


def log(msg):
    print("chaos %s %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class Db:
    """psql, one process per call; a call fails (returns None) while Postgres is down."""

    def __init__(self, dbname):
        self.dbname = dbname

    def query(self, sql, db=None, timeout=60):
        try:
            r = subprocess.run(
                ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-h", PGHOST, "-p", PGPORT,
                 "-U", PGUSER, "-d", db or self.dbname, "-f", "-"],
                input=sql, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if r.returncode != 0:
            return None
        return [line.split("\t") for line in r.stdout.splitlines() if line != ""]

    def must(self, sql, db=None):
        rows = self.query(sql, db)
        if rows is None:
            sys.exit("chaos: SQL failed: %s" % sql[:200])
        return rows


class Publisher(threading.Thread):
    """Publishes (topic, lines) batches with kcat in order; a batch that fails
    (broker down) is sent again until it goes: duplicates are the contract's
    normal case, loss is not."""

    def __init__(self, prefix):
        super().__init__(daemon=True)
        self.prefix = prefix
        self.q = queue.Queue()
        self.sent = 0
        self.failures = 0
        self.busy = False

    def put(self, topic, lines):
        if lines:
            self.q.put((topic, lines))

    def idle(self):
        return self.q.empty() and not self.busy

    def run(self):
        while True:
            topic, lines = self.q.get()
            self.busy = True
            data = "".join(k + "\t" + v + "\n" for k, v in lines)
            while True:
                try:
                    r = subprocess.run(
                        ["kcat", "-P", "-b", BOOT, "-t", self.prefix + topic, "-K", "\t",
                         "-H", "content-type=application/cloudevents+json",
                         "-X", "enable.idempotence=true", "-X", "message.timeout.ms=20000"],
                        input=data, capture_output=True, text=True, timeout=60)
                    ok = r.returncode == 0 and "fail" not in r.stderr.lower()
                except subprocess.TimeoutExpired:
                    ok = False
                if ok:
                    break
                self.failures += 1
                time.sleep(1)
            self.sent += len(lines)
            self.busy = False


def cloudevent(ce_id, ce_type, data):
    return json.dumps({"specversion": "1.0", "id": ce_id, "type": ce_type, "source": "chaos",
                       "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "datacontenttype": "application/json", "data": data},
                      separators=(",", ":"))


class Order:
    __slots__ = ("ce_id", "items", "plan", "steps", "sent", "sent_at", "id", "status", "version",
                 "done")

    def __init__(self, ce_id, items, plan):
        self.ce_id, self.items, self.plan = ce_id, items, plan
        self.sent = set()      # steps already published
        self.sent_at = {}      # step -> time it was (last) published
        self.id = None
        self.status = None
        self.version = 0
        self.done = False


class Workload:
    def __init__(self, rng, tag, pub, args):
        self.rng, self.tag, self.pub, self.args = rng, tag, pub, args
        self.orders = {}       # ce_id -> Order still followed
        self.created = 0
        self.bad = 0
        self.history = collections.deque(maxlen=20000)  # (topic, key, value) for dup-burst
        self.later = []        # duplicates held back for the next tick
        self.counts = collections.Counter()
        self.n_late = 0
        self.late = []         # [product id, insert at, orders naming it], not inserted yet

    def emit(self, out, topic, key, value, dup_ok=True):
        out[topic].append((key, value))
        self.history.append((topic, key, value))
        if dup_ok and self.rng.random() < 0.08:
            self.later.append((topic, key, value))
            self.counts["duplicates"] += 1

    def new_orders(self, out, n):
        for _ in range(n):
            self.created += 1
            ce_id = "%s-o-%d" % (self.tag, self.created)
            if self.rng.random() < 0.004:
                self.bad_record(out, ce_id)
                continue
            lines = {}
            for _ in range(self.rng.randint(1, 5)):
                p = self.rng.choice(PRODUCTS)[0]
                lines[p] = lines.get(p, 0) + self.rng.randint(1, 3)
            if self.rng.random() < self.args.late_share:
                lines[self.late_product()] = self.rng.randint(1, 3)
            items = [{"product_id": p, "quantity": q} for p, q in lines.items()]
            customer = self.rng.choice(CUSTOMERS) if self.rng.random() > 0.01 else "c-unknown"
            plan = self.rng.choices([p for p, _ in PLANS], [w for _, w in PLANS])[0]
            self.orders[ce_id] = Order(ce_id, items, plan)
            self.emit(out, "order.created", ce_id,
                      cloudevent(ce_id, "order.created", {"customer_id": customer, "items": items}))

    def late_product(self):
        """A product that does not exist yet: the newest one still to be inserted
        while fewer than LATE_GROUP orders name it, else a new one, due 2 to 10 s
        from now."""
        if not self.late or self.late[-1][2] >= LATE_GROUP:
            self.n_late += 1
            self.late.append(["p-late-%d" % self.n_late, time.time() + self.rng.uniform(2, 10), 0])
        self.late[-1][2] += 1
        self.counts["orders naming a late product"] += 1
        return self.late[-1][0]

    def bad_record(self, out, ce_id):
        """A record that must be dead-lettered (its ce_source is chaos/bad)."""
        self.bad += 1
        kind = self.rng.randrange(3)
        if kind == 0:
            value = "{not json " + ce_id
        elif kind == 1:
            value = json.dumps({"specversion": "1.0", "id": ce_id, "type": "order.created",
                                "source": "chaos/bad", "data": {"customer_id": "c-1",
                                                                "items": []}})
        else:
            value = json.dumps({"specversion": "1.0", "id": ce_id, "type": "order.created",
                                "source": "chaos/bad", "data": {"customer_id": "c-1", "items": [
                                    {"product_id": "p-1", "quantity": 0}]}})
        out["order.created"].append((ce_id, value))

    def update(self, out, o, step, status, expected=True):
        ce_id = "%s-%s" % (o.ce_id, step)
        data = {"order_id": o.id, "status": status}
        if expected and self.rng.random() < 0.5:
            data["expected_version"] = o.version
        self.emit(out, "order.status", o.id, cloudevent(ce_id, "order.status.update", data))
        o.sent.add(step)
        o.sent_at[step] = time.time()
        self.counts["updates"] += 1
        # Now and then an extra update that the machine must reject and record:
        # a stale expected_version, or the step after this one sent first.
        r = self.rng.random()
        if r < 0.04:
            data = {"order_id": o.id, "status": status, "expected_version": max(o.version - 1, 0)}
            self.emit(out, "order.status", o.id,
                      cloudevent(ce_id + "-stale", "order.status.update", data), dup_ok=False)
            self.counts["stale updates"] += 1

    def early(self, out, o, status):
        """An update sent ahead of its turn (reordered): rejected, recorded."""
        ce_id = "%s-early-%s" % (o.ce_id, status)
        self.emit(out, "order.status", o.id,
                  cloudevent(ce_id, "order.status.update", {"order_id": o.id, "status": status}),
                  dup_ok=False)
        self.counts["early updates"] += 1

    def return_request(self, out, o, step, items):
        ce_id = "%s-%s" % (o.ce_id, step)
        self.emit(out, "return.requested", o.id, cloudevent(
            ce_id, "return.requested", {"order_id": o.id, "items": items, "reason": "chaos"}))
        o.sent.add(step)
        o.sent_at[step] = time.time()
        self.counts["returns"] += 1

    def next_step(self, o):
        """The step the plan takes from the order's status, or None (waiting
        for orderflow), or "done"."""
        s, plan = o.status, o.plan
        if s in ("REJECTED", "CANCELLED", "RETURNED"):
            return "done"
        if s in ("CREATED", "INVENTORY_RESERVED"):
            return None
        if s == "CONFIRMED":
            if plan == "unpaid":
                return None  # the payment deadline cancels it
            if plan == "cancel_confirmed":
                return ("cancel", "CANCELLED")
            return ("pay", "PAID")
        if s == "PAID":
            if plan == "cancel_paid":
                return ("cancel", "CANCELLED")
            return ("ship", "SHIPPED")
        if s == "SHIPPED":
            return ("deliver", "DELIVERED")
        if s == "DELIVERED":
            if plan == "deliver":
                return "done"
            if plan == "return_full":
                return ("return1", [dict(i) for i in o.items])
            first = o.items[0]
            return ("return1", [{"product_id": first["product_id"], "quantity": 1}])
        if s == "PARTIALLY_RETURNED":
            if plan != "return_twice":
                return "done"
            return ("return2", None)
        return None

    def follow(self, out, rows):
        now = time.time()
        for ce_id, oid, status, version in rows:
            o = self.orders.get(ce_id)
            if o is None:
                continue
            o.id, o.status, o.version = oid, status, int(version)
            step = self.next_step(o)
            if step == "done":
                o.done = True
                del self.orders[ce_id]
                continue
            if step is None:
                continue
            name, arg = step
            # A step already sent is sent again (same ce_id) only when nothing
            # happened for 30 s: its first copy is then surely lost.
            if name in o.sent and now - o.sent_at[name] < 30:
                continue
            if name in ("return1", "return2"):
                if name == "return2":
                    arg = self.remaining(o)
                    if not arg:
                        o.done = True
                        del self.orders[ce_id]
                        continue
                self.return_request(out, o, name, arg)
                continue
            if name == "pay" and self.rng.random() < 0.03:
                self.early(out, o, "SHIPPED")
            self.update(out, o, name, arg)

    def remaining(self, o):
        """The rest of the order after return1 took one unit of the first line."""
        items = [dict(i) for i in o.items]
        items[0]["quantity"] -= 1
        return [i for i in items if i["quantity"] > 0]

    def waiting(self):
        """ce_ids of the orders still followed."""
        return list(self.orders.keys())


class Proc:
    def __init__(self, name, worker, port):
        self.name, self.worker, self.port = name, worker, port
        self.p = None
        self.failpoint = None
        self.expect_kill = False
        self.started_at = 0.0


class Chaos:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.tag = "chaos%dx%d" % (os.getpid(), int(time.time()))
        self.prefix = self.tag + "."
        self.dbname = "of_" + self.tag
        self.url = "postgresql://%s@%s:%s/%s" % (PGUSER, PGHOST, PGPORT, self.dbname)
        self.db = Db(self.dbname)
        self.work = tempfile.mkdtemp(prefix="chaos-")
        self.faults = collections.Counter()
        self.fired = collections.Counter()
        self.exits = collections.Counter()
        self.unexpected = []
        self.procs = {}
        self.replicas = {w: 1 for w in WORKERS}
        self.restarter = None  # ops/stack up running in the background
        self.pg_down_until = 0.0
        self.pub = Publisher(self.prefix)
        self.wl = Workload(self.rng, self.tag, self.pub, args)
        self.env = {
            "ORDERFLOW_OUTBOX_SWEEP_GRACE": "3s", "KAFKA_MESSAGE_TIMEOUT_MS": "2500",
            "ORDERFLOW_OUTBOX_SWEEP_INTERVAL": "1s", "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_MAX_POLL_INTERVAL_MS": str(args.max_poll_ms),
            "ORDERFLOW_PAYMENT_DEADLINE": "%ds" % args.payment_deadline,
            "ORDERFLOW_DEADLINE_SCAN_INTERVAL": "1s", "LOG_LEVEL": "info",
            # Parking on, with a short backoff so that a late order follows its
            # product within seconds. start() merges this after os.environ, so
            # it overrides ctest's ORDERFLOW_PARK_MAX_AGE=0 (parking off).
            "ORDERFLOW_PARK_MAX_AGE": "10m", "ORDERFLOW_PARK_RETRY_MAX": "2s",
        }
        for kv in args.worker_env:
            k, _, v = kv.partition("=")
            self.env[k] = v
        self.sizes = []  # (orders so far, {table: (rows, bytes)}) sampled during the run
        self.next_size = 0.0
        for i, short in enumerate(WORKERS):
            for r in range(1, 4):
                name = "%s%d" % (short, r)
                self.procs[name] = Proc(name, short, args.http_base_port + 3 * i + r - 1)

    # --- setup -------------------------------------------------------------------------

    def setup(self):
        log("run %s: database %s, topic prefix %s, seed %d, work dir %s" %
            (self.tag, self.dbname, self.prefix, self.args.seed, self.work))
        subprocess.run(["createdb", "-h", PGHOST, "-p", PGPORT, "-U", PGUSER, self.dbname],
                       check=True)
        env = dict(os.environ, DATABASE_URL=self.url)
        orderctl = os.path.join(BUILD, "tools/orderctl/orderctl")
        subprocess.run([orderctl, "migrate", "up", "--dir", os.path.join(SRC, "migrations")],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([orderctl, "topics", "create", "--kafka-bootstrap-servers", BOOT,
                        "--topic-prefix", self.prefix, "--partitions", "6"], check=True,
                       stdout=subprocess.DEVNULL)
        stock = self.args.stock
        self.db.must("insert into customers (id, name) values %s;"
                     "insert into products (id, name, price_cents, stock) values %s;"
                     "create table chaos_initial_stock as select id, stock from products;" % (
                         ",".join("('%s', 'Customer %s')" % (c, c) for c in CUSTOMERS),
                         ",".join("('%s', 'Part %s', %d, %d)" % (p, p, price, stock)
                                  for p, price in PRODUCTS)))
        self.pub.start()

    # --- processes -----------------------------------------------------------------------

    def start(self, pr, failpoint=None):
        env = dict(os.environ, DATABASE_URL=self.url, KAFKA_BOOTSTRAP_SERVERS=BOOT,
                   ORDERFLOW_TOPIC_PREFIX=self.prefix,
                   ORDERFLOW_GROUP_ID="%s-%s" % (self.tag, WORKERS[pr.worker]),
                   ORDERFLOW_HTTP_PORT=str(pr.port), **self.env)
        env.pop("ORDERFLOW_FAILPOINTS", None)
        if failpoint:
            env["ORDERFLOW_FAILPOINTS"] = failpoint
        logf = open(os.path.join(self.work, pr.name + ".log"), "a")
        logf.write("=== %s: start%s\n" % (time.strftime("%H:%M:%S"),
                                         " with failpoint " + failpoint if failpoint else ""))
        logf.flush()
        binary = os.path.join(BUILD, "workers", WORKERS[pr.worker],
                              "orderflow-" + WORKERS[pr.worker])
        pr.p = subprocess.Popen([binary], env=env, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        pr.failpoint = failpoint
        pr.expect_kill = False
        pr.started_at = time.time()

    def desired(self, pr):
        return int(pr.name[2:]) <= self.replicas[pr.worker]

    def supervise(self):
        """Restarts what died (as Kubernetes would), notes how each process ended."""
        for pr in self.procs.values():
            if pr.p is not None and pr.p.poll() is not None:
                rc = pr.p.returncode
                if rc == -signal.SIGKILL and pr.failpoint and not pr.expect_kill:
                    self.fired[pr.failpoint.split("@")[0]] += 1
                    self.exits["SIGKILL at a failpoint"] += 1
                elif rc == -signal.SIGKILL and pr.expect_kill:
                    self.exits["SIGKILL by the harness"] += 1
                elif rc == 70:
                    self.exits["exit 70 (fatal Kafka error, restart)"] += 1
                elif rc == 0 and pr.expect_kill:
                    self.exits["exit 0 on SIGTERM"] += 1
                elif rc == 75 and pr.expect_kill:
                    # A scale-down while Postgres or Kafka is down: the worker
                    # could not drain within its grace period and says so
                    # (docs/operations.md, exit codes); what it left is
                    # redelivered. The final stop, on a healthy stack, must
                    # still exit 0.
                    self.exits["exit 75 on SIGTERM (no clean drain within the grace period)"] += 1
                elif rc == -signal.SIGTERM and pr.expect_kill:
                    # A scale-down that stopped a replica a moment after its
                    # exec, before the worker's start-up could hold the
                    # signal back (the dynamic loader, the sanitizer's set-up
                    # and option parsing run first; from of_worker_run on, a
                    # SIGTERM waits for its handler and is a clean stop): it
                    # had consumed nothing. The final stop must exit 0.
                    self.exits["SIGTERM while still starting"] += 1
                else:
                    self.exits["unexpected exit %s" % rc] += 1
                    self.unexpected.append("%s exited with %s" % (pr.name, rc))
                pr.p = None
            if pr.p is None and self.desired(pr):
                self.start(pr)

    def running(self, worker=None):
        return [pr for pr in self.procs.values()
                if pr.p is not None and pr.p.poll() is None and
                (worker is None or pr.worker == worker)]

    def stop(self, pr, sig=signal.SIGTERM):
        if pr.p is None or pr.p.poll() is not None:
            return
        pr.expect_kill = True
        pr.p.send_signal(sig)

    # --- stack --------------------------------------------------------------------------

    def pidfile(self, path):
        try:
            with open(path) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def pg_pid(self):
        return self.pidfile(os.path.join(os.path.realpath(os.path.join(STACK_DIR, "pg")),
                                         "data", "postmaster.pid"))

    def kafka_pid(self):
        return self.pidfile(os.path.join(STACK_DIR, "run", "kafka.pid"))

    def stack_up(self):
        """ops/stack up for what is down, in the background (one at a time)."""
        if self.restarter is not None and self.restarter.poll() is None:
            return
        logf = open(os.path.join(self.work, "stack.log"), "a")
        self.restarter = subprocess.Popen(
            [os.path.join(SRC, "ops/stack"), "up", "--no-workers", "--no-build"],
            stdout=logf, stderr=subprocess.STDOUT)
        logf.close()

    def wait_stack(self, timeout=180):
        """Waits for ops/stack up; tries it three times, then gives up the run."""
        for attempt in range(3):
            end = time.time() + timeout
            while (self.restarter is not None and self.restarter.poll() is None and
                   time.time() < end):
                self.tick()
            if self.restarter is None or self.restarter.returncode == 0:
                return
            log("ops/stack up failed (%s); see stack.log in the kept logs" %
                self.restarter.returncode)
            self.restarter = None
            time.sleep(2)
            self.stack_up()
        raise RuntimeError("the stack did not come back after three ops/stack up")

    def kill_wait(self, pid, sig, timeout=60):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        end = time.time() + timeout
        while time.time() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            self.tick(0.1)

    # --- faults -------------------------------------------------------------------------

    def bounce(self, what, pid, sig, down_s=0.0):
        """Stops a stack process with sig, keeps it down for down_s, starts it again."""
        log("fault %s (pid %s)%s" % (what, pid, " for %.0f s" % down_s if down_s else ""))
        if pid:
            self.kill_wait(pid, sig)
        self.tick(down_s)
        self.stack_up()
        self.wait_stack()

    def fault(self, kind):
        self.faults[kind] += 1
        if kind == "kill":
            procs = self.running()
            if procs:
                pr = self.rng.choice(procs)
                log("fault kill: SIGKILL %s" % pr.name)
                self.stop(pr, signal.SIGKILL)
        elif kind == "failpoint":
            point = self.rng.choice(sorted(POINTS))
            workers, most = POINTS[point]
            procs = self.running(self.rng.choice(workers))
            if procs:
                pr = self.rng.choice(procs)
                fp = "%s@%d" % (point, self.rng.randint(1, most))
                log("fault failpoint: %s restarted with %s" % (pr.name, fp))
                pr.expect_kill = True
                pr.p.kill()
                pr.p.wait()
                self.exits["SIGKILL by the harness"] += 1
                self.start(pr, fp)
        elif kind == "broker-kill":
            self.bounce("broker-kill: SIGKILL kafka", self.kafka_pid(), signal.SIGKILL)
        elif kind == "broker-pause":
            pid = self.kafka_pid()
            secs = self.rng.uniform(3, 12)
            log("fault broker-pause: SIGSTOP kafka for %.1f s" % secs)
            if pid:
                os.kill(pid, signal.SIGSTOP)
                self.tick(secs)
                os.kill(pid, signal.SIGCONT)
        elif kind == "pg-crash":
            self.bounce("pg-crash: immediate shutdown of postgres", self.pg_pid(), signal.SIGQUIT)
        elif kind == "pg-terminate":
            # Client sessions only: the fault is the workers' connections
            # dropped (a failover, a proxy, an operator). Ending autovacuum's
            # workers too, every minute or so, kept vacuum of the busy
            # tables from ever finishing and grew them without bound
            # (docs/operations.md, "Table sizes under chaos").
            rows = self.db.query("select count(pg_terminate_backend(pid)) from pg_stat_activity"
                                 " where datname = '%s' and pid <> pg_backend_pid()"
                                 " and backend_type = 'client backend'" % self.dbname,
                                 db="postgres")
            log("fault pg-terminate: %s session(s) terminated" % (rows[0][0] if rows else "?"))
        elif kind == "pg-outage":
            secs = self.args.max_poll_ms / 1000 + self.rng.uniform(3, 8)
            self.bounce("pg-outage: postgres stopped past max.poll.interval.ms %d" %
                        self.args.max_poll_ms, self.pg_pid(), signal.SIGINT, secs)
        elif kind == "scale":
            worker = self.rng.choice(sorted(WORKERS))
            n = self.rng.randint(1, 3)
            log("fault scale: %s from %d to %d replica(s)" % (worker, self.replicas[worker], n))
            self.replicas[worker] = n
            for pr in self.procs.values():
                if pr.worker == worker and not self.desired(pr):
                    self.stop(pr)
        elif kind == "dup-burst":
            sample = self.rng.sample(list(self.wl.history), min(200, len(self.wl.history)))
            self.rng.shuffle(sample)
            out = collections.defaultdict(list)
            for topic, key, value in sample:
                out[topic].append((key, value))
            for topic, lines in out.items():
                self.pub.put(topic, lines)
            log("fault dup-burst: %d event(s) sent again, shuffled" % len(sample))

    def pick_fault(self):
        kinds = [("kill", 16), ("failpoint", 30), ("broker-kill", 3), ("broker-pause", 6),
                 ("pg-crash", 5), ("pg-terminate", 10), ("pg-outage", 2), ("scale", 16),
                 ("dup-burst", 12)]
        # Every kind at least once in a run: the first ones go in a fixed order.
        n = sum(self.faults.values())
        if n < len(kinds):
            return kinds[n][0]
        return self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]

    # --- the loop -------------------------------------------------------------------------

    def tick(self, secs=0.0):
        """Keeps the workload and the processes going for secs (at least once)."""
        end = time.time() + secs
        while True:
            self.supervise()
            now = time.time()
            if now >= self.next_work:
                self.next_work = now + 1.0
                self.work_tick()
            if time.time() >= end:
                return
            time.sleep(min(0.1, max(0.0, end - time.time())))

    SIZED = ("inbox", "outbox", "dead_letters", "deadlines", "execution_history", "orders")

    def sample_sizes(self):
        """Rows (counted: pg_stat's estimates restart at every Postgres crash) and bytes (with
        indexes) of the runtime's tables, every --size-every s."""
        rows = self.db.query(" union all ".join(
            "select '%s', (select count(*) from %s), pg_total_relation_size('%s')" % (t, t, t)
            for t in self.SIZED))
        if rows:
            live = {n: (int(t), int(b)) for n, t, b in rows}
            self.sizes.append((self.wl.created, live))

    def insert_late(self):
        """Inserts the late products that are due, each with its stock in
        chaos_initial_stock in the same statement. While Postgres is down the
        insert fails and the next tick tries again; one whose insert committed
        but did not answer is not inserted (nor counted) twice."""
        due = [p for p in self.wl.late if p[1] <= time.time()]
        if not due:
            return
        rows = self.db.query(
            "with p as (insert into products (id, name, price_cents, stock) values %s"
            " on conflict (id) do nothing returning id, stock)"
            " insert into chaos_initial_stock select id, stock from p" % ",".join(
                "('%s', 'Part %s', %d, %d)" % (p, p, LATE_PRICE, self.args.stock)
                for p, _, _ in due))
        if rows is None:
            return
        self.wl.late = [p for p in self.wl.late if p not in due]
        self.wl.counts["late products inserted"] += len(due)

    def work_tick(self):
        if self.args.size_every and time.time() >= self.next_size:
            self.next_size = time.time() + self.args.size_every
            self.sample_sizes()
        self.insert_late()
        out = collections.defaultdict(list)
        for topic, key, value in self.wl.later:
            out[topic].append((key, value))
        self.wl.later = []
        if self.generating:
            n = min(self.args.rate, self.args.orders - self.wl.created)
            self.wl.new_orders(out, n)
        ids = self.wl.waiting()
        for i in range(0, len(ids), 5000):
            chunk = ids[i:i + 5000]
            rows = self.db.query(
                "select source_event_id, id, status, version from orders"
                " where source_event_id = any('{%s}'::text[])" % ",".join(chunk))
            if rows is None:
                break  # Postgres is down: next tick
            self.wl.follow(out, rows)
        for topic in ("order.created", "order.status", "return.requested"):
            self.pub.put(topic, out.get(topic))

    def log_lines(self, start=None):
        """Lines of every worker log (from the byte offsets in start)."""
        out, ends = [], {}
        for f in sorted(os.listdir(self.work)):
            if not f.endswith(".log") or f == "stack.log":
                continue
            path = os.path.join(self.work, f)
            with open(path, "rb") as fh:
                fh.seek((start or {}).get(f, 0))
                data = fh.read()
                ends[f] = fh.tell()
            out += [(f, line) for line in data.decode(errors="replace").splitlines()]
        return out, ends

    def scenario_pg_outage(self):
        """Two replicas per worker under load, Postgres down for --pg-outage-minutes:
        no replica may leave its group (no revocation, no assignment, no exit
        while it is down), and processing resumes once it is back."""
        args = self.args
        self.replicas = {w: 2 for w in WORKERS}
        self.supervise()
        self.tick(30)  # warm up under load; groups settle with two members each
        _, marks = self.log_lines()
        exits_before = sum(self.exits.values())
        pid = self.pg_pid()
        log("scenario pg-outage: postgres down for %d min under load, 2 replicas per worker" %
            args.pg_outage_minutes)
        self.faults["pg-outage (scenario, %d min)" % args.pg_outage_minutes] += 1
        t0 = time.time()
        if pid:
            self.kill_wait(pid, signal.SIGINT)
        self.tick(args.pg_outage_minutes * 60)
        self.stack_up()
        self.wait_stack()
        back = time.time()
        lines, _ = self.log_lines(marks)
        moved = [f + ": " + l[:160] for f, l in lines
                 if '"partition revoked"' in l or '"partition assigned"' in l or
                 "MAX_POLL" in l or "left the group" in l]
        exits = sum(self.exits.values()) - exits_before
        resumed = None
        while time.time() < back + 300:
            rows = self.db.query("select count(*) from orders where updated_at > to_timestamp(%f)"
                                 % back)
            if rows and int(rows[0][0]) > 0:
                resumed = time.time() - back
                break
            self.tick(0.2)
        self.outage = {"down s": back - t0, "rebalance lines": len(moved),
                       "exits": exits, "resumed s": resumed}
        log("scenario pg-outage: postgres back after %.0f s; first order moved %.1f s later; "
            "%d group-change log line(s), %d process exit(s) while it was down" %
            (back - t0, resumed if resumed is not None else -1, len(moved), exits))
        for m in moved[:10]:
            log("  " + m)
        if moved:
            self.unexpected.append("%d group change(s) while Postgres was down" % len(moved))
        if exits:
            self.unexpected.append("%d worker exit(s) while Postgres was down" % exits)
        if resumed is None:
            self.unexpected.append("no order moved within 300 s of Postgres coming back")

    def run(self):
        args = self.args
        self.setup()
        self.next_work = 0.0
        self.generating = True
        self.supervise()
        start = time.time()
        next_fault = start + 5
        if args.scenario == "pg-outage":
            self.scenario_pg_outage()
            while self.wl.created < args.orders:
                self.tick(0.5)
        while self.wl.created < args.orders or sum(self.faults.values()) < args.faults:
            self.generating = self.wl.created < args.orders
            if time.time() >= next_fault:
                self.fault(self.pick_fault())
                next_fault = time.time() + self.rng.uniform(0.5, 2 * args.fault_interval - 0.5)
            self.tick(0.1)
        log("workload published (%d orders), %d faults injected; draining" %
            (self.wl.created, sum(self.faults.values())))
        self.generating = False
        self.replicas = {w: max(n, 1) for w, n in self.replicas.items()}
        ok = self.drain()
        if args.size_every:
            self.sample_sizes()
        self.stop_all()
        return ok

    def drain(self):
        """Waits until every late product is inserted, every order followed has
        reached where its plan leads, and the outbox and the parked keys are
        empty (nothing is injected meanwhile)."""
        end = time.time() + self.args.drain_timeout
        while time.time() < end:
            self.tick(2)
            rows = self.db.query(
                "select (select count(*) from outbox where published_at is null),"
                " (select count(*) from orders where status in"
                "  ('CREATED', 'INVENTORY_RESERVED', 'CONFIRMED')),"
                " (select count(*) from parked_keys)")
            if rows is None:
                continue
            unpublished, moving, parked = (int(v) for v in rows[0])
            if (not self.wl.orders and not self.wl.late and unpublished == 0 and moving == 0 and
                    parked == 0 and self.pub.idle()):
                log("drained: every order at rest, outbox empty, nothing parked")
                return True
            log("draining: %d order(s) followed, %d moving, %d outbox row(s) unpublished, "
                "%d key(s) parked, %d late product(s) to insert" %
                (len(self.wl.orders), moving, unpublished, parked, len(self.wl.late)))
        log("drain timed out after %d s" % self.args.drain_timeout)
        return False

    def stop_all(self):
        for pr in self.procs.values():
            self.stop(pr)
        end = time.time() + 60
        for pr in self.procs.values():
            if pr.p is None:
                continue
            try:
                rc = pr.p.wait(max(1, end - time.time()))
            except subprocess.TimeoutExpired:
                pr.p.kill()
                rc = pr.p.wait()
            if rc != 0:
                self.unexpected.append("%s exited with %s on SIGTERM" % (pr.name, rc))
                self.exits["unexpected exit %s" % rc] += 1
            else:
                self.exits["exit 0 on SIGTERM"] += 1
            pr.p = None
        self.replicas = {w: 0 for w in WORKERS}

    def sanitizer_reports(self):
        n = 0
        for f in os.listdir(self.work):
            with open(os.path.join(self.work, f), errors="replace") as fh:
                for line in fh:
                    if "Sanitizer" in line and "ERROR" in line or "runtime error:" in line:
                        n += 1
        return n

    def parking_logged(self):
        """Keys the worker logs show parked, replayed to the end, and given their
        final outcome (park.c logs every move of a key by its table; a move
        logged in a transaction that a crash then lost is logged again when it
        is redone, hence distinct keys)."""
        keys = {"parked": set(), "replayed": set(), "final": set()}
        move = re.compile(r"parked key (\S+) on \S+: (\S+) -> (\S+): (\w+)")
        for _, line in self.log_lines()[0]:
            m = move.search(line)
            if m is None:
                continue
            key, src, dst, word = m.groups()
            if src == "(none)" and dst == "PARKED":
                keys["parked"].add(key)
            elif dst == "(none)":
                keys["final" if word == "last" else "replayed"].add(key)
        return {k: len(v) for k, v in keys.items()}

    def report(self, drained):
        print()
        print("| fault | injected |")
        print("|---|---|")
        for kind, n in sorted(self.faults.items()):
            print("| %s | %d |" % (kind, n))
        print("| **total** | **%d** |" % sum(self.faults.values()))
        print()
        print("| failpoint fired (process killed itself there) | times |")
        print("|---|---|")
        for point in sorted(POINTS):
            print("| %s | %d |" % (point, self.fired[point]))
        print()
        print("| how worker processes ended | count |")
        print("|---|---|")
        for k, n in sorted(self.exits.items()):
            print("| %s | %d |" % (k, n))
        print()
        print("| workload | count |")
        print("|---|---|")
        print("| orders published | %d |" % self.wl.created)
        print("| malformed records (must be dead-lettered) | %d |" % self.wl.bad)
        for k, n in sorted(self.wl.counts.items()):
            print("| %s | %d |" % (k, n))
        print("| kcat batches sent again after a failure | %d |" % self.pub.failures)
        parking = self.parking_logged()
        print("| keys parked (worker logs) | %d |" % parking["parked"])
        print("| keys replayed, every event took effect | %d |" % parking["replayed"])
        print("| keys replayed for the last time (park-max-age) | %d |" % parking["final"])
        if getattr(self, "outage", None):
            o = self.outage
            print()
            print("| Postgres outage scenario | |")
            print("|---|---|")
            print("| Postgres down | %.0f s |" % o["down s"])
            print("| group changes logged while it was down (must be 0) | %d |" %
                  o["rebalance lines"])
            print("| worker exits while it was down (must be 0) | %d |" % o["exits"])
            print("| first order moved after it came back | %s |" %
                  ("%.1f s" % o["resumed s"] if o["resumed s"] is not None else "never"))
        if self.sizes:
            print()
            print("| orders published | " + " | ".join(
                "%s rows / MB" % t for t in self.SIZED) + " |")
            print("|---" * (len(self.SIZED) + 1) + "|")
            k = len(self.sizes)
            picks = sorted({min(k - 1, i * k // 10) for i in range(10)} | {k - 1})
            for n, live in (self.sizes[i] for i in picks):
                print("| %d | " % n + " | ".join(
                    "%d / %.1f" % (live.get(t, (0, 0))[0], live.get(t, (0, 0))[1] / 1e6)
                    for t in self.SIZED) + " |")
        rows = self.db.query("select status, count(*) from orders group by 1 order by 2 desc")
        print()
        print("| order status at the end | orders |")
        print("|---|---|")
        for status, n in rows or []:
            print("| %s | %s |" % (status, n))
        print(flush=True)

    def check(self, drained):
        extra = list(self.unexpected)
        n = self.sanitizer_reports()
        if n:
            extra.append("%d sanitizer report line(s) in the worker logs" % n)
        if not drained:
            extra.append("the run did not drain within --drain-timeout")
        cmd = [sys.executable, os.path.join(SRC, "tests/chaos/check.py"), "--db", self.dbname,
               "--prefix", self.prefix, "--payment-deadline", str(self.args.payment_deadline)]
        for e in extra:
            cmd += ["--violation", e]
        return subprocess.run(cmd).returncode

    def cleanup(self):
        for pr in self.procs.values():
            if pr.p is not None and pr.p.poll() is None:
                pr.p.kill()
        keep = self.args.keep_logs or os.environ.get("OF_KEEP_LOGS")
        if keep:
            os.makedirs(keep, exist_ok=True)
            for f in os.listdir(self.work):
                shutil.copy(os.path.join(self.work, f), keep)
        shutil.rmtree(self.work, ignore_errors=True)
        if not self.args.keep_db:
            subprocess.run(["dropdb", "--if-exists", "--force", "-h", PGHOST, "-p", PGPORT, "-U",
                            PGUSER, self.dbname], stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "1")))
    ap.add_argument("--orders", type=int, default=20000)
    ap.add_argument("--rate", type=int, default=150, help="orders published per second")
    ap.add_argument("--faults", type=int, default=50, help="faults to inject at least")
    ap.add_argument("--fault-interval", type=float, default=3.0,
                    help="mean seconds between faults")
    ap.add_argument("--stock", type=int, default=0,
                    help="initial stock per product (default: scarce, about 0.9 units per order)")
    ap.add_argument("--payment-deadline", type=int, default=20)
    ap.add_argument("--late-share", type=float, default=0.01,
                    help="share of orders that name a product inserted 2 to 10 s later")
    ap.add_argument("--max-poll-ms", type=int, default=10000)
    ap.add_argument("--drain-timeout", type=int, default=600)
    ap.add_argument("--http-base-port", type=int, default=28400)
    ap.add_argument("--scenario", choices=["schedule", "pg-outage"], default="schedule",
                    help="schedule: the seeded fault schedule; pg-outage: one long Postgres "
                    "outage under load with 2 replicas per worker (no other fault)")
    ap.add_argument("--pg-outage-minutes", type=float, default=6)
    ap.add_argument("--worker-env", action="append", default=[], metavar="VAR=VALUE",
                    help="an environment variable for every worker (e.g. a retention)")
    ap.add_argument("--size-every", type=float, default=0,
                    help="sample the tables' sizes every this many seconds (0: never)")
    ap.add_argument("--keep-logs", help="copy the worker logs here at the end")
    ap.add_argument("--keep-db", action="store_true", help="keep the run's database")
    args = ap.parse_args()
    if args.scenario == "pg-outage":
        args.faults = 0
        if args.max_poll_ms == 10000:
            args.max_poll_ms = 300000  # librdkafka's default: the outage is longer
    if args.stock == 0:
        args.stock = max(50, args.orders * 3 // len(PRODUCTS))
    c = Chaos(args)
    rc = 1
    try:
        drained = c.run()
        c.report(drained)
        rc = c.check(drained)
    finally:
        c.cleanup()
    sys.exit(rc)


if __name__ == "__main__":
    main()
