#!/usr/bin/env python3
"""check.py: the invariant checker of a chaos run.

Loads every record of the run's topics (order.created, order.status,
return.requested and their .dlq topics, read with kcat) and the legal
transitions (`orderctl graph order|return`, the tables the workers run) into
the run's database, runs check.sql and prints one row per invariant with its
violations and an example. Exit status 1 when any invariant is violated (or
when --violation adds one found by the harness), 0 otherwise.

  check.py --db DBNAME --prefix TOPIC_PREFIX [--payment-deadline S] [--violation TEXT]...

Environment: KAFKA_BOOTSTRAP_SERVERS, PGHOST, PGPORT, PGUSER, ORDERFLOW_BUILD_DIR.
"""
import argparse
import os
import re
import subprocess
import sys

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("ORDERFLOW_BUILD_DIR", os.path.join(SRC, "build"))
BOOT = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:29092")
TOPICS = ("order.created", "order.status", "return.requested")

SETUP = r"""
drop table if exists chaos_records, chaos_legal;
create table chaos_records (topic text not null, partition integer not null,
    "offset" bigint not null, key text, headers text, value text,
    base text, dlq boolean not null default false);
create table chaos_legal (machine text not null, from_state text, to_state text not null,
    trigger text not null, step text not null);
-- The value as jsonb, or NULL when it is not a JSON object.
create or replace function chaos_json(v text) returns jsonb language plpgsql immutable as $$
begin
    if v is null or left(ltrim(v), 1) <> '{' then
        return null;
    end if;
    return v::jsonb;
exception when others then
    return null;
end
$$;
"""


def psql(db, sql=None, file=None, stdin=None, variables=()):
    cmd = ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-d", db]
    for k, v in variables:
        cmd += ["-v", "%s=%s" % (k, v)]
    cmd += ["-c", sql] if sql is not None else ["-f", file]
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("check: psql failed: %s" % r.stderr.strip())
    return r.stdout


def load_topic(db, prefix, base, dlq):
    topic = prefix + base + (".dlq" if dlq else "")
    r = subprocess.run(
        ["kcat", "-C", "-b", BOOT, "-t", topic, "-o", "beginning", "-e", "-q",
         "-f", "%t\t%p\t%o\t%k\t%h\t%s\n"], capture_output=True, timeout=3600)
    if r.returncode != 0:
        sys.exit("check: could not read %s: %s" % (topic, r.stderr.decode(errors="replace")))
    # The topic name goes into its own column; the records carry the full name.
    psql(db, "create temporary table chaos_load (topic text, partition integer, \"offset\" bigint,"
             " key text, headers text, value text);"
             " copy chaos_load from stdin with (format csv, delimiter e'\\t', quote e'\\x01');"
             " insert into chaos_records select l.topic, l.partition, l.\"offset\", l.key,"
             " l.headers, l.value, '%s', %s from chaos_load l" % (base, "true" if dlq else "false"),
         stdin=r.stdout.decode("utf-8", errors="replace").replace("\x01", "?"))
    return r.stdout.count(b"\n")


def load_legal(db):
    orderctl = os.path.join(BUILD, "tools/orderctl/orderctl")
    rows = []
    for machine in ("order", "return"):
        out = subprocess.run([orderctl, "graph", machine], capture_output=True, text=True,
                             check=True).stdout
        for line in out.splitlines():
            m = re.match(r"\s*(\S+) --> (\S+) : (\S+) / (\S+)\s*$", line)
            if m:
                src = "NULL" if m.group(1) == "[*]" else "'%s'" % m.group(1)
                rows.append("('%s', %s, '%s', '%s', '%s')" %
                            (machine, src, m.group(2), m.group(3), m.group(4)))
    if not rows:
        sys.exit("check: orderctl graph printed no transition")
    psql(db, "insert into chaos_legal values " + ",".join(rows))
    return len(rows)


def main():
    ap = argparse.ArgumentParser(description="invariant checker of a chaos run")
    ap.add_argument("--db", required=True)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--payment-deadline", type=int, default=20)
    ap.add_argument("--violation", action="append", default=[],
                    help="a violation found outside the database (counted as one)")
    ap.add_argument("--no-load", action="store_true",
                    help="use the records and transitions already loaded")
    args = ap.parse_args()

    if not args.no_load:
        psql(args.db, SETUP)
        n = 0
        for base in TOPICS:
            for dlq in (False, True):
                n += load_topic(args.db, args.prefix, base, dlq)
        edges = load_legal(args.db)
        print("check: %d records loaded from %d topics, %d legal transitions" %
              (n, 2 * len(TOPICS), edges), flush=True)
    out = psql(args.db, file=os.path.join(SRC, "tests/chaos/check.sql"),
               variables=[("payment_deadline", args.payment_deadline)])
    rows = [line.split("\t") for line in out.splitlines() if line]
    for v in args.violation:
        rows.append(["harness: " + v, "1", v])
    total = 0
    print("| invariant | violations | example |")
    print("|---|---|---|")
    for name, n, example in rows:
        total += int(n)
        print("| %s | %s | %s |" % (name, n, example[:400]))
    print("| **total** | **%d** | |" % total)
    print("check: %s" % ("every invariant holds" if total == 0 else
                          "%d invariant violation(s)" % total), flush=True)
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
