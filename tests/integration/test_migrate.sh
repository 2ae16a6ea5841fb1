#!/usr/bin/env bash
# test_migrate.sh: integration test of `orderctl migrate` and the schema in
# migrations/ against a real PostgreSQL, in a scratch database of its own.
#
# Usage: tests/integration/test_migrate.sh [path/to/orderctl]
#   ORDERCTL        the orderctl binary when not given as the argument
#                   (default: <repo>/build/tools/orderctl/orderctl)
#   MIGRATIONS_DIR  the migrations to test (default: <repo>/migrations)
#   PGHOST, PGPORT, PGUSER, PGPASSWORD
#                   the server, as for psql. When PGHOST is unset and
#                   DATABASE_URL is set (eval "$(ops/stack env)"), host, port,
#                   user and password are taken from DATABASE_URL.
# The server must be reachable (the test fails otherwise) and PGUSER must be
# allowed to create databases. The scratch database is dropped on exit; the
# database named "orderflow" is never touched.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
ORDERCTL=${1:-${ORDERCTL:-$repo/build/tools/orderctl/orderctl}}
MIGRATIONS_DIR=${MIGRATIONS_DIR:-$repo/migrations}

# Server coordinates from DATABASE_URL when the PG* variables are not set.
if [[ -z ${PGHOST:-} && -n ${DATABASE_URL:-} ]]; then
    url_re='^postgres(ql)?://(([^:@/]*)(:([^@/]*))?@)?([^:/?]*)(:([0-9]+))?'
    if [[ $DATABASE_URL =~ $url_re ]]; then
        [[ -n ${BASH_REMATCH[3]} ]] && export PGUSER=${PGUSER:-${BASH_REMATCH[3]}}
        [[ -n ${BASH_REMATCH[5]} ]] && export PGPASSWORD=${PGPASSWORD:-${BASH_REMATCH[5]}}
        [[ -n ${BASH_REMATCH[6]} ]] && export PGHOST=${BASH_REMATCH[6]}
        [[ -n ${BASH_REMATCH[8]} ]] && export PGPORT=${PGPORT:-${BASH_REMATCH[8]}}
    fi
fi
# orderctl gets its URL from --database-url below; never from the stack's.
unset DATABASE_URL PGDATABASE ORDERFLOW_MIGRATIONS_DIR

DB="of_migtest_$$_$(date +%s)"
T=$(mktemp -d)
passed=0

cleanup() {
    dropdb --if-exists "$DB" >/dev/null 2>&1 || echo "warning: could not drop database \"$DB\"" >&2
    rm -rf "$T"
}

ok() {
    passed=$((passed + 1))
    echo "ok $passed - $*"
}

fail() {
    echo "not ok - $*" >&2
    for f in out err; do
        if [[ -s $T/$f ]]; then
            echo "--- last $f:" >&2
            cat "$T/$f" >&2
        fi
    done
    exit 1
}

# Runs `orderctl migrate ARGS...` on the scratch database; sets rc and
# leaves stdout/stderr in $T/out and $T/err.
migrate() {
    set +e
    "$ORDERCTL" migrate "$@" --database-url "dbname=$DB" >"$T/out" 2>"$T/err"
    rc=$?
    set -e
}

expect_rc() {
    [[ $rc == "$1" ]] || fail "$2: exit code $rc, expected $1"
}

expect_out() {
    grep -Eq -- "$1" "$T/out" || fail "$2: stdout does not match /$1/"
}

expect_err() {
    grep -Fq -- "$1" "$T/err" || fail "$2: stderr does not contain \"$1\""
}

sql() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$DB" -c "$1"
}

# The statement must fail with an error containing pattern.
expect_sql_error() {
    local what=$1 pattern=$2 statement=$3 r
    set +e
    psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "$statement" >"$T/out" 2>"$T/err"
    r=$?
    set -e
    [[ $r != 0 ]] || fail "$what: the statement succeeded"
    expect_err "$pattern" "$what"
    ok "$what"
}

# Newer pg_dump releases wrap the dump in \restrict/\unrestrict lines with a
# random key; those lines are not schema, so they are dropped.
schema_dump() {
    pg_dump --schema-only --no-owner -d "$DB" | grep -Ev '^\\(un)?restrict ' >"$1"
}

# --- preconditions -------------------------------------------------------------

[[ -x $ORDERCTL ]] || fail "no orderctl binary at \"$ORDERCTL\" (pass it as the first argument)"
[[ -d $MIGRATIONS_DIR ]] || fail "no migrations directory \"$MIGRATIONS_DIR\""
[[ $DB != orderflow ]] || fail "refusing to use the database \"orderflow\""
pg_isready -q -t 10 ||
    fail "PostgreSQL is not reachable at ${PGHOST:-(default)}:${PGPORT:-5432} (run ops/stack up or set PGHOST/PGPORT/PGUSER)"

trap cleanup EXIT
createdb "$DB" || fail "could not create database \"$DB\""
echo "# scratch database $DB on ${PGHOST:-(default)}:${PGPORT:-5432}, migrations from $MIGRATIONS_DIR"

# What the directory holds: how many versions, and the newest.
n_up=$(find "$MIGRATIONS_DIR" -maxdepth 1 -name '[0-9]*_*.up.sql' | wc -l)
last_file=$(cd "$MIGRATIONS_DIR" && printf "%s\n" [0-9]*_*.up.sql | sort -n | tail -n 1)
last=$((10#${last_file%%_*}))
first_file=$(cd "$MIGRATIONS_DIR" && printf "%s\n" [0-9]*_*.up.sql | sort -n | head -n 1)
first=$((10#${first_file%%_*}))
first_name=${first_file#*_}
first_name=${first_name%.up.sql}
((n_up >= 1)) || fail "no up migrations in \"$MIGRATIONS_DIR\""

# --- up on a fresh database -----------------------------------------------------

migrate up --dir "$MIGRATIONS_DIR"
expect_rc 0 "up on a fresh database"
[[ $(grep -c '^applied ' "$T/out") == "$n_up" ]] || fail "up printed $(grep -c '^applied ' "$T/out") applied lines, expected $n_up"
expect_out "^applied $first $first_name in [0-9]+ ms\$" "up names the first version"
expect_out "^schema at version $last\$" "up reports the final version"
[[ $(sql "select count(*) from schema_migrations") == "$n_up" ]] || fail "schema_migrations does not have $n_up rows"
[[ $(sql "select max(version) from schema_migrations") == "$last" ]] || fail "schema_migrations max(version) is not $last"
ok "up applies $n_up version(s) to a fresh database, schema at version $last"

# The stored checksum is the SHA-256 of the file's bytes (checked with coreutils).
want=$(sha256sum "$MIGRATIONS_DIR/$first_file" | cut -d' ' -f1)
got=$(sql "select checksum from schema_migrations where version = $first")
[[ $want == "$got" ]] || fail "checksum of $first_file: stored $got, sha256sum $want"
ok "schema_migrations.checksum is the SHA-256 of $first_file"

# Every table the contract names exists.
for t in customers products orders order_items returns return_items refunds executions \
    execution_history inbox outbox dead_letters deadlines; do
    [[ $(sql "select to_regclass('public.$t') is not null") == t ]] || fail "table \"$t\" missing after up"
done
ok "all 13 tables exist"

# --- up again is a no-op ----------------------------------------------------------

schema_dump "$T/before.sql"
migrate up --dir "$MIGRATIONS_DIR"
expect_rc 0 "second up"
[[ $(cat "$T/out") == "nothing to apply, schema at version $last" ]] || fail "second up printed: $(cat "$T/out")"
schema_dump "$T/after.sql"
diff -u "$T/before.sql" "$T/after.sql" >"$T/err" || fail "schema changed on a second up"
ok "second up prints \"nothing to apply, schema at version $last\" and leaves pg_dump --schema-only identical"

# --- status and verify -------------------------------------------------------------

migrate status --dir "$MIGRATIONS_DIR"
expect_rc 0 "status"
expect_out "^$first +$first_name +applied +ok +[0-9]{4}-[0-9]{2}-[0-9]{2}T" "status shows version $first applied, checksum ok"
expect_out "^schema at version $last: $n_up applied, 0 pending\$" "status summary"
ok "status shows version $first applied with checksum ok"

migrate verify --dir "$MIGRATIONS_DIR"
expect_rc 0 "verify on unchanged files"
expect_out "^ok: $n_up applied migrations match" "verify"
ok "verify exits 0 on unchanged files"

# --- a changed applied file is refused ------------------------------------------------

mkdir "$T/changed"
cp "$MIGRATIONS_DIR"/*.sql "$T/changed/"
printf '%s\n' "-- an edit after the file was applied" >>"$T/changed/$first_file"
stored=$(sql "select checksum from schema_migrations where version = $first")
edited=$(sha256sum "$T/changed/$first_file" | cut -d' ' -f1)

migrate up --dir "$T/changed"
expect_rc 65 "up with a changed applied file"
expect_err "$T/changed/$first_file" "up names the changed file"
expect_err "has changed" "up says the file changed"
expect_err "$stored" "up shows the stored checksum"
expect_err "$edited" "up shows the file's checksum"
ok "up refuses a changed applied file with exit 65, naming the file and both checksums"

migrate verify --dir "$T/changed"
expect_rc 65 "verify with a changed applied file"
expect_err "$T/changed/$first_file" "verify names the changed file"
ok "verify refuses a changed applied file with exit 65"

migrate status --dir "$T/changed"
expect_rc 0 "status with a changed file"
expect_out "^$first +$first_name +applied +CHANGED " "status marks the file CHANGED"
ok "status marks the changed file CHANGED"

migrate down --to 0 --dir "$T/changed"
expect_rc 65 "down with a changed applied file"
[[ $(sql "select count(*) from schema_migrations") == "$n_up" ]] || fail "a refused run changed schema_migrations"
schema_dump "$T/after.sql"
diff -u "$T/before.sql" "$T/after.sql" >"$T/err" || fail "a refused run changed the schema"
ok "down refuses too, and refused runs change nothing"

# --- an applied file that disappeared is refused ------------------------------------------

mkdir "$T/missing"
cp "$MIGRATIONS_DIR"/*.sql "$T/missing/"
rm -f "$T/missing/${first_file%.up.sql}".*.sql
migrate up --dir "$T/missing"
expect_rc 65 "up with a missing applied file"
expect_err "applied migration version $first" "up names the missing version"
migrate verify --dir "$T/missing"
expect_rc 65 "verify with a missing applied file"
ok "up and verify refuse a missing applied file with exit 65"

# --- bad usage, bad configuration, unreachable server ------------------------------------------

migrate down --dir "$MIGRATIONS_DIR"
expect_rc 64 "down without --to"
expect_err "--to" "down without --to explains"
mkdir "$T/badnames"
cp "$MIGRATIONS_DIR"/*.sql "$T/badnames/"
touch "$T/badnames/0099 bad name.up.sql"
migrate status --dir "$T/badnames"
expect_rc 78 "a bad file name"
expect_err "0099 bad name.up.sql" "the bad file is named"
set +e
"$ORDERCTL" migrate status --dir "$MIGRATIONS_DIR" \
    --database-url "host=127.0.0.1 port=1 dbname=x connect_timeout=5" >"$T/out" 2>"$T/err"
rc=$?
set -e
expect_rc 69 "an unreachable server"
ok "exit codes: 64 for down without --to, 78 for a bad file name, 69 for an unreachable server"

# --- down to 0 and up again ------------------------------------------------------------------

migrate down --to 0 --dir "$MIGRATIONS_DIR"
expect_rc 0 "down --to 0"
[[ $(grep -c '^reverted ' "$T/out") == "$n_up" ]] || fail "down printed $(grep -c '^reverted ' "$T/out") reverted lines, expected $n_up"
expect_out "^schema at version 0\$" "down reports version 0"
[[ $(sql "select count(*) from schema_migrations") == 0 ]] || fail "schema_migrations not empty after down --to 0"
left=$(sql "select string_agg(c.relname, ',') from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = 'public' and c.relname not like 'schema_migrations%'")
[[ -z $left ]] || fail "objects left after down --to 0: $left"
ok "down --to 0 reverts $n_up version(s) and leaves only schema_migrations"

migrate up --dir "$MIGRATIONS_DIR"
expect_rc 0 "up after down"
[[ $(grep -c '^applied ' "$T/out") == "$n_up" ]] || fail "up after down applied a different number of versions"
schema_dump "$T/after.sql"
diff -u "$T/before.sql" "$T/after.sql" >"$T/err" || fail "schema after down+up differs from the first up"
ok "up after down re-applies everything and the schema equals the first one"

# --- two migrators at once ----------------------------------------------------------------------

migrate down --to 0 --dir "$MIGRATIONS_DIR"
expect_rc 0 "down before the concurrency check"
set +e
"$ORDERCTL" migrate up --dir "$MIGRATIONS_DIR" --database-url "dbname=$DB" >"$T/c1" 2>&1 &
p1=$!
"$ORDERCTL" migrate up --dir "$MIGRATIONS_DIR" --database-url "dbname=$DB" >"$T/c2" 2>&1 &
p2=$!
wait $p1
r1=$?
wait $p2
r2=$?
set -e
[[ $r1 == 0 && $r2 == 0 ]] || { cat "$T/c1" "$T/c2" >&2; fail "concurrent ups exited $r1 and $r2"; }
[[ $(cat "$T/c1" "$T/c2" | grep -c '^applied ') == "$n_up" ]] || { cat "$T/c1" "$T/c2" >&2; fail "concurrent ups applied versions more than once"; }
[[ $(sql "select count(*) from schema_migrations") == "$n_up" ]] || fail "schema_migrations wrong after concurrent ups"
ok "two concurrent ups both succeed and apply each version once"

# --- constraints hold ------------------------------------------------------------------------------

sql "insert into products (id, name, price_cents, stock) values ('p-1', 'Widget', 250, 5)"
[[ $(sql "select stock from products where id = 'p-1'") == 5 ]] || fail "product insert did not land"
ok "a valid product inserts"
expect_sql_error "a product with stock -1 is refused" 'violates check constraint "products_stock_check"' \
    "insert into products (id, name, price_cents, stock) values ('p-2', 'Gadget', 100, -1)"
expect_sql_error "taking stock below 0 is refused" 'violates check constraint "products_stock_check"' \
    "update products set stock = stock - 6 where id = 'p-1'"
expect_sql_error "a product id with a space is refused" 'violates check constraint "products_id_check"' \
    "insert into products (id, name, price_cents, stock) values ('p 3', 'Bad', 1, 1)"

o=$(sql "select gen_random_uuid()")
r=$(sql "select gen_random_uuid()")
sql "insert into orders (id, customer_id, status, correlation_id, source_event_id) values ('$o', 'nobody', 'DELIVERED', 'c-1', 'e-1')"
sql "insert into returns (id, order_id, status, correlation_id, source_event_id) values ('$r', '$o', 'REFUND_INITIATED', 'c-1', 'e-2')"
sql "insert into refunds (id, return_id, order_id, amount_cents, cause) values (gen_random_uuid(), '$r', '$o', 250, 'RETURN')"
ok "an order for an unknown customer, a return and its refund insert"
expect_sql_error "a second refund for one return is refused" 'violates unique constraint "refunds_return_id_key"' \
    "insert into refunds (id, return_id, order_id, amount_cents, cause) values (gen_random_uuid(), '$r', '$o', 250, 'RETURN')"
sql "insert into refunds (id, order_id, amount_cents, cause) values (gen_random_uuid(), '$o', 250, 'CANCELLATION')"
expect_sql_error "a second cancellation refund for one order is refused" 'refunds_one_cancellation_per_order' \
    "insert into refunds (id, order_id, amount_cents, cause) values (gen_random_uuid(), '$o', 250, 'CANCELLATION')"
expect_sql_error "a RETURN refund without a return is refused" 'refunds_cause_matches_return' \
    "insert into refunds (id, order_id, amount_cents, cause) values (gen_random_uuid(), '$o', 1, 'RETURN')"
expect_sql_error "a second order from one event is refused" 'orders_source_event_id_key' \
    "insert into orders (id, customer_id, status, correlation_id, source_event_id) values (gen_random_uuid(), 'x', 'CREATED', 'c-2', 'e-1')"
expect_sql_error "an unknown order status is refused" 'orders_status_check' \
    "update orders set status = 'LOST' where id = '$o'"

sql "insert into inbox (consumer, ce_id, topic, partition, \"offset\") values ('order-created', 'ev-1', 'order.created', 0, 10)"
sql "insert into inbox (consumer, ce_id, topic, partition, \"offset\") values ('order-status', 'ev-1', 'order.created', 0, 10)"
ok "one ce_id inserts once per consumer"
expect_sql_error "a second inbox row for (consumer, ce_id) is refused" 'violates unique constraint "inbox_pkey"' \
    "insert into inbox (consumer, ce_id, topic, partition, \"offset\") values ('order-created', 'ev-1', 'order.created', 0, 11)"

e=$(sql "select gen_random_uuid()")
sql "insert into executions (id, machine, order_id, status, current_state) values ('$e', 'OrderProcess', '$o', 'RUNNING', 'CREATED')"
expect_sql_error "a second OrderProcess execution for one order is refused" 'executions_one_per_order' \
    "insert into executions (id, machine, order_id, status, current_state) values (gen_random_uuid(), 'OrderProcess', '$o', 'RUNNING', 'CREATED')"
expect_sql_error "a stopped execution needs stopped_at" 'executions_stopped_iff_not_running' \
    "update executions set status = 'SUCCEEDED' where id = '$e'"
expect_sql_error "outbox headers must be a JSON array" 'outbox_headers_check' \
    "insert into outbox (id, topic, payload, headers) values (gen_random_uuid(), 't', 'x', '{}')"

echo "# $passed checks passed"
