#!/usr/bin/env bash
# test_order_crash.sh: OrderProcess survives SIGKILL of either worker.
#
# 300 orders (keys spread over the 6 partitions, 5 products with limited
# stock so that some are rejected) are published while order-created and
# order-status run. Each is killed with SIGKILL mid-stream and started again:
# order-created once a third of the orders exist, order-status once a third
# are final and again while it works through the backlog that built up while
# it was down. Once every order is final the state must be exactly what one
# clean run would give: one order per event, one history row per step, inbox
# rows matching the events, stock = initial - confirmed quantities, every
# outbox row published (the relay's sweep republishes what a crash left), and
# on order.status one ce_id per (order, version); the same ce_id twice is
# allowed (the relay is at-least-once). Where each kill landed is printed,
# not asserted.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup crash
of_topics_create
T_CREATED="${OF_PREFIX}order.created"
T_STATUS="${OF_PREFIX}order.status"
sql "insert into customers (id, name) values ('c-1', 'Ada'), ('c-2', 'Brian'), ('c-3', 'Chen');
     insert into products (id, name, price_cents, stock) values
         ('k-1', 'Bolt', 250, 150), ('k-2', 'Crate', 1999, 150), ('k-3', 'Nut', 5, 150),
         ('k-4', 'Lathe', 120000, 150), ('k-5', 'Oil', 75, 150);
     create table expected_lines (ce_id text not null, product_id text not null, quantity integer not null);
     create view changed as
         select k.partition, k.\"offset\", k.headers->>'ce_id' ce_id, k.value::jsonb d
         from kafka_records k
         where k.topic = '$T_STATUS' and k.headers->>'ce_type' = 'order.status.changed'"

# Short sweeps so that rows a crash left unpublished go out soon; a short
# session so that the group does not wait long for a killed member.
env=(ORDERFLOW_OUTBOX_SWEEP_GRACE=3s KAFKA_MESSAGE_TIMEOUT_MS=2500 ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s ORDERFLOW_BATCH_SIZE=20
    KAFKA_SESSION_TIMEOUT_MS=6000)
of_worker_start oc order-created "${env[@]}"
of_worker_start os order-status "${env[@]}"
for ((i = 0; i < 600; i++)); do
    [ "$(of_worker_partitions oc)" -eq 6 ] && [ "$(of_worker_partitions os)" -eq 6 ] && break
    sleep 0.1
done

RANDOM=7
: >"$OF_WORK/orders.tsv"
: >"$OF_WORK/lines.tsv"
for ((i = 1; i <= 300; i++)); do
    id="$OF_TAG-o-$i"
    items=
    for ((k = RANDOM % 3 + 1; k > 0; k--)); do
        p="k-$((RANDOM % 5 + 1))"
        q=$((RANDOM % 3 + 1))
        items+="${items:+,}{\"product_id\":\"$p\",\"quantity\":$q}"
        printf '%s\t%s\t%s\n' "$id" "$p" "$q" >>"$OF_WORK/lines.tsv"
    done
    printf '%s\t{"customer_id":"c-%s","items":[%s]}\n' "$id" $((i % 3 + 1)) "$items" >>"$OF_WORK/orders.tsv"
done
psql "$OF_URL" -XAtq -v ON_ERROR_STOP=1 -c "copy expected_lines from stdin" <"$OF_WORK/lines.tsv"

while IFS=$'\t' read -r id body; do
    of_publish order.created "$id" "$id" order.created "$body"
done <"$OF_WORK/orders.tsv" &
OF_PIDS[publisher]=$!

in_flight() { # orders not final, and order.created records not yet turned into orders
    sql "select count(*) filter (where status in ('CREATED', 'INVENTORY_RESERVED')) || ' orders in flight, ' ||
                300 - count(*) || ' not created yet' from orders"
}
kill9() { # kill9 <name>
    echo "# SIGKILL $1: $(in_flight)"
    of_worker_kill "$1"
}
final="count(*) filter (where status in ('CONFIRMED', 'REJECTED'))"
# order-created while order.created records keep coming.
wait_for "select count(*) >= 100 from orders" 120 || true
kill9 oc
sleep 1
of_worker_start oc order-created "${env[@]}"
# order-status once a third are final. It stays down until a backlog has
# built up, and is killed again once it has worked through a little of it.
wait_for "select $final >= 100 from orders" 120 || true
kill9 os
wait_for "select count(*) filter (where status in ('CREATED', 'INVENTORY_RESERVED')) >= 100
          or count(*) = 300 from orders" 120 || true
of_worker_start os order-status "${env[@]}"
f=$(sql "select $final from orders")
wait_for "select $final >= least($f + 10, 300) from orders" 120 || true
kill9 os
of_worker_start os order-status "${env[@]}"

wait "${OF_PIDS[publisher]}" || true
unset "OF_PIDS[publisher]"
wait_for "select count(*) = 300 and bool_and(status in ('CONFIRMED', 'REJECTED')) from orders" 180 || true
wait_for "select count(*) = count(published_at) from outbox" 120 || true
of_kafka_wait order.status \
    "select count(*) = 0 from (select distinct ce_id from changed
                               where d->>'status' in ('CREATED', 'INVENTORY_RESERVED')) c
     where not exists (select 1 from inbox i where i.consumer = 'order-status' and i.ce_id = c.ce_id)" 120 || true
of_kafka_load order.created >/dev/null

conf=$(sql "select count(*) from orders where status = 'CONFIRMED'")
rej=$(sql "select count(*) from orders where status = 'REJECTED'")
echo "# $conf confirmed, $rej rejected"
echo "# $(sql "select count(*) - count(distinct ce_id) from changed") duplicate status records on Kafka," \
    "$(sql "select count(*) from outbox where attempts > 0") outbox rows republished by the sweep," \
    "$(cat "$OF_WORK"/o[cs].log | grep -c '"msg":"duplicate event skipped"' || true) redeliveries skipped by the inbox"

check "300 events on order.created, 300 orders, one per ce_id" "300 300 300" \
    "$(sql "select count(*) from kafka_records where topic = '$T_CREATED'") $(sql "select count(*) || ' ' || count(distinct correlation_id) from orders")"
check "every order final: CONFIRMED (version 3) or REJECTED OUT_OF_STOCK (version 2)" 300 \
    "$(sql "select count(*) from orders where (status = 'CONFIRMED' and version = 3)
            or (status = 'REJECTED' and status_reason = 'OUT_OF_STOCK' and version = 2)")"
check "both outcomes occurred (the stock is limited)" "yes yes" \
    "$([ "$conf" -gt 0 ] && echo yes || echo no) $([ "$rej" -gt 0 ] && echo yes || echo no)"
check "one history row per step, no duplicates" 300 \
    "$(sql "select count(*) from (select o.status, string_agg(h.seq || ':' || h.step, ',' order by h.seq) sig
            from orders o join executions e on e.order_id = o.id and e.machine = 'OrderProcess'
            join execution_history h on h.execution_id = e.id group by o.id, o.status) x
            where sig = case status when 'CONFIRMED' then '1:CreateOrder,2:UpdateInventory,3:OrderCompleted'
                        else '1:CreateOrder,2:UpdateInventory' end")"
check "history rows in all: 4 per confirmed order (with OrderUpdate Start), 2 per rejected" \
    "$((4 * conf + 2 * rej))" "$(sql "select count(*) from execution_history")"
check "executions: one OrderProcess per order, one OrderUpdate per confirmed order" "300 $conf" \
    "$(sql "select count(*) filter (where machine = 'OrderProcess') || ' ' ||
                   count(*) filter (where machine = 'OrderUpdate') from executions")"
check "inbox of order-created: one row per order.created ce_id" "300 300" \
    "$(sql "select count(*) || ' ' || count(*) filter (where ce_id in (select correlation_id from orders))
            from inbox where consumer = 'order-created'")"
# CONFIRMED and REJECTED drive no step: settled without a transaction, no inbox row.
check "inbox of order-status: one row per distinct status event that drives a step, none for the others" \
    "$((2 * conf + rej)) $((2 * conf + rej)) 0" \
    "$(sql "select count(distinct ce_id) from changed where d->>'status' in ('CREATED', 'INVENTORY_RESERVED')") $(sql "select count(*) from inbox i
            where i.consumer = 'order-status' and i.ce_id in (select ce_id from changed
            where d->>'status' in ('CREATED', 'INVENTORY_RESERVED'))") $(sql "select count(*) from inbox i
            where i.consumer = 'order-status' and i.ce_id in (select ce_id from changed
            where d->>'status' in ('CONFIRMED', 'REJECTED'))")"
check "stock = initial - quantities of the CONFIRMED orders" \
    "$(sql "select string_agg(p.id || '=' || (150 - coalesce(x.q, 0)), ' ' order by p.id) from products p
            left join (select e.product_id, sum(e.quantity) q from expected_lines e
            join orders o on o.correlation_id = e.ce_id and o.status = 'CONFIRMED' group by 1) x
            on x.product_id = p.id")" \
    "$(sql "select string_agg(id || '=' || stock, ' ' order by id) from products")"
check "reserved lines are exactly those of CONFIRMED orders" 0 \
    "$(sql "select count(*) from order_items i join orders o on o.id = i.order_id
            where i.reserved <> (o.status = 'CONFIRMED')")"
check "totals match the price snapshot" 300 \
    "$(sql "select count(*) from orders o join (select e.ce_id, sum(e.quantity * p.price_cents) t
            from expected_lines e join products p on p.id = e.product_id group by 1) x
            on x.ce_id = o.correlation_id where o.total_cents = x.t")"
check "every outbox row published, one per transition" "$((3 * conf + 2 * rej)) 0" \
    "$(sql "select count(*) || ' ' || count(*) filter (where published_at is null) from outbox")"
check "every outbox row is on Kafka" 0 \
    "$(sql "select count(*) from outbox b where not exists (select 1 from changed c where c.ce_id = b.id::text)")"
check "every (order_id, version) has exactly one distinct ce_id" "0 $((3 * conf + 2 * rej))" \
    "$(sql "select count(*) filter (where n > 1) || ' ' || count(*) from (select d->>'order_id', d->>'version',
            count(distinct ce_id) n from changed group by 1, 2) x")"
check "each order's versions are 1..n, first published in version order" 300 \
    "$(sql "select count(*) from (select o.id, o.version,
                   array_agg((f.d->>'version')::int order by f.first) vs
            from orders o join (select distinct on (ce_id) ce_id, d, (partition, \"offset\") first
                                from changed order by ce_id, partition, \"offset\") f
              on f.d->>'order_id' = o.id::text group by o.id, o.version) x
            where vs = array(select generate_series(1, x.version))")"
check "one PAYMENT deadline per confirmed order" "$conf" "$(sql "select count(*) from deadlines")"
check "nothing dead-lettered" 0 "$(sql "select count(*) from dead_letters")"
of_finish
