#!/usr/bin/env bash
# test_checker.sh: the invariant checker fails a broken run.
#
# A small chaos run without faults (300 orders, every plan, 5 % of them
# naming a product inserted seconds later) must pass the checker. Then, for
# each invariant, a copy of the run's database (with the topic records the
# checker loaded) gets one seeded violation of that invariant, and check.py
# on the copy must exit 1 and count a violation in exactly that row (the
# others stay at 0 where the seed does not touch them).
set -euo pipefail
: "${ORDERFLOW_SOURCE_DIR:?runs under ctest}" "${PGPORT:?}"
here="$ORDERFLOW_SOURCE_DIR/tests/chaos"
export PGHOST="${PGHOST:-127.0.0.1}" PGUSER="${PGUSER:-orderflow}"
passed=0 failed=0
work=$(mktemp -d)
db=
cleanup() {
    local d
    for d in $(psql -XAt -d postgres -c "select datname from pg_database where datname like 'ofchk_%'"); do
        dropdb --if-exists --force "$d" || true
    done
    [ -n "$db" ] && dropdb --if-exists --force "$db" || true
    rm -rf -- "$work"
}
trap cleanup EXIT

python3 "$here/chaos.py" --orders 300 --rate 100 --faults 0 --payment-deadline 5 \
    --late-share 0.05 --http-base-port 28440 --keep-db | tee "$work/run.out"
db=$(sed -n 's/^chaos .* run \([^:]*\): database \([^,]*\),.*/\2/p' "$work/run.out" | head -n 1)
[ -n "$db" ] || { echo "not ok: no database name in the run's output"; exit 1; }
if grep -q '^check: every invariant holds' "$work/run.out"; then
    echo "ok - the clean run passes the checker"
    passed=$((passed + 1))
else
    echo "not ok - the clean run does not pass the checker"
    failed=$((failed + 1))
fi

n=0
# seeded <invariant name (a prefix of its row)> <SQL that breaks it> [regex the row must match]
seeded() {
    local name=$1 breaker=$2 want=${3:-} copy rc=0 row
    n=$((n + 1))
    copy="ofchk_${n}_$$"
    createdb -T "$db" "$copy"
    psql -XAtq -v ON_ERROR_STOP=1 -d "$copy" -c "$breaker" >/dev/null
    python3 "$here/check.py" --db "$copy" --no-load --payment-deadline 5 >"$work/check.$n" || rc=$?
    row=$(grep -F "| $name" "$work/check.$n" | head -n 1 || true)
    if [ "$rc" -eq 1 ] && [[ "$row" =~ \|\ [1-9][0-9]*\ \| ]] && [[ -z "$want" || "$row" =~ $want ]]; then
        echo "ok - seeded violation caught: $name"
        passed=$((passed + 1))
    else
        echo "not ok - seeded violation not caught: $name (exit $rc, row: ${row:-none})"
        cat "$work/check.$n"
        failed=$((failed + 1))
    fi
    dropdb --force "$copy"
}

seeded "one order per order.created ce_id" \
    "insert into orders (id, customer_id, status, correlation_id, source_event_id)
     values ('00000000-0000-4000-8000-000000000001', 'c-1', 'REJECTED', 'x', 'phantom')"
seeded "no order or return stuck" \
    "update orders set status = 'INVENTORY_RESERVED' where id = (select min(id::text)::uuid from orders where status = 'DELIVERED')"
seeded "every applied transition legal" \
    "update execution_history set to_state = 'SHIPPED' where (execution_id, seq) =
       (select execution_id, seq from execution_history where step = 'RecordPayment' and outcome = 'applied' limit 1)"
seeded "versions +1 per transition" \
    "update orders set version = version + 1 where id = (select min(id::text)::uuid from orders where status = 'DELIVERED')"
# An order.status.changed lost on its way to the topic: the row names the
# missing version and the transition that should have published it.
seeded "versions +1 per transition" \
    "delete from chaos_records where ctid = (select ctid from chaos_records
       where base = 'order.status' and not dlq and headers like '%ce_type=order.status.changed%'
         and value like '%\"version\":2%' limit 1)" \
    'missing 2 \([A-Za-z]+ [A-Z_]+->[A-Z_]+ by [a-z0-9._]*order\.(created|status) [A-Za-z0-9._:-]+\)'
seeded "stock never negative and conserved" \
    "update products set stock = stock + 1 where id = 'p-1'"
seeded "compensation once per cancellation" \
    "insert into refunds (id, order_id, amount_cents, cause)
     select '00000000-0000-4000-8000-000000000002', id, 1, 'CANCELLATION' from orders
      where status = 'DELIVERED' limit 1"
seeded "one refund per return" \
    "update refunds set amount_cents = amount_cents + 1000000000 where id = (select id from refunds where cause = 'RETURN' limit 1)"
seeded "each ce_id one effect per consumer" \
    "insert into execution_history (execution_id, seq, step, from_state, to_state, outcome, event_id)
     select execution_id, seq + 1000, step, from_state, to_state, outcome, event_id
       from execution_history where step = 'RecordShipment' and outcome = 'applied' limit 1"
seeded "every record has its effect or a dead letter" \
    "insert into chaos_records (topic, partition, \"offset\", key, headers, value, base)
     select topic, partition, 1000000, key, headers,
            replace(value, '\"id\":\"', '\"id\":\"lost-'), base
       from chaos_records where base = 'order.status' and not dlq
        and value like '{\"specversion\"%order.status.update%' limit 1"
seeded "dead letters only for bad records" \
    "insert into dead_letters (worker, topic, partition, \"offset\", error_code, reason)
     select 'order-created', topic, partition, \"offset\", 'PROCESSING_FAILED', 'seeded'
       from chaos_records where base = 'order.created' and not dlq and value like '{\"specversion\"%\"source\":\"chaos\"%' limit 1"
seeded "per-key order of order.status.changed" \
    "with k as (select key from chaos_records where base = 'order.status' and headers ~ 'ce_type=order.status.changed'
                 group by key having count(*) >= 3 limit 1),
          r as (select r.\"offset\" o, row_number() over (order by r.\"offset\") n from chaos_records r, k
                 where r.key = k.key and r.headers ~ 'ce_type=order.status.changed' and base = 'order.status')
     update chaos_records c set \"offset\" = case when c.\"offset\" = (select o from r where n = 1)
                                                  then (select o from r where n = 2) else (select o from r where n = 1) end
      where c.base = 'order.status' and c.\"offset\" in (select o from r where n <= 2)
        and c.key = (select key from k)"
seeded "outbox drained" \
    "insert into outbox (id, topic, key, payload) values ('00000000-0000-4000-8000-000000000003', 'x', 'k', 'v')"
# A late product's order given up as if park-max-age had passed.
seeded "orders naming a late product created once" \
    "update orders set status = 'REJECTED', status_reason = 'UNKNOWN_PRODUCT'
      where source_event_id = (select min(chaos_json(value)->>'id') from chaos_records
                                where base = 'order.created' and not dlq and value like '%\"p-late-%')" \
    'REJECTED UNKNOWN_PRODUCT'
seeded "nothing parked at the end" \
    "insert into parked_keys (consumer, topic, key, reason, error_code, head_ce_id)
     values ('order-created', 'x.order.created', 'seeded', 'seeded', 'UNKNOWN_PRODUCT', 'seeded')"

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ]
