#!/usr/bin/env bash
# test_order_process.sh: the OrderProcess machine end to end on the real stack.
#
# order-created and two order-status replicas (one consumer group) run against
# a scratch database and prefixed topics. Phases, each checked in Postgres and
# on Kafka before the next starts:
#   1. 100 binary-mode orders (3 customers, 5 products, 1-4 lines) and one
#      structured-mode order: all CONFIRMED at version 3 with the right totals
#      and stock, executions and history, deadlines, three status events each;
#   2. rejections: unknown customer, unknown product, out of stock on the
#      second line only (no partial reservation);
#   3. 200 orders for one unit of a product with stock 50, both replicas
#      reserving at once: exactly 50 CONFIRMED, 150 REJECTED, stock 0;
#   4. redelivery: the same order.created twice (in one batch and later), an
#      exact copy of an old status event, a stale one with a new ce_id;
#   5. order.status.update: PAID with the right expected_version applies, a
#      stale SHIPPED and an illegal DELIVERED are recorded as rejected.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup op
of_topics_create
T_CREATED="${OF_PREFIX}order.created"
T_STATUS="${OF_PREFIX}order.status"

sql "insert into customers (id, name) values ('c-1', 'Ada'), ('c-2', 'Brian'), ('c-3', 'Chen');
     insert into products (id, name, price_cents, stock) values
         ('p-1', 'Bolt', 250, 100000), ('p-2', 'Crate', 1999, 100000), ('p-3', 'Nut', 5, 100000),
         ('p-4', 'Lathe', 120000, 100000), ('p-5', 'Oil', 75, 100000),
         ('s-a', 'Scarce A', 500, 10), ('s-b', 'Scarce B', 700, 1),
         ('r-1', 'Contended', 100, 50);
     create table expected_lines (ce_id text not null, product_id text not null, quantity integer not null);
     -- Kafka views over the records of_kafka_load copies in.
     create view changed as
         select k.partition, k.\"offset\", k.key, k.headers h, k.value::jsonb d
         from kafka_records k
         where k.topic = '$T_STATUS' and k.headers->>'ce_type' = 'order.status.changed';
     -- One line per status event: status/previous/version[/reason].
     create view changed_sig as
         select c.*, (c.d->>'status') || '/' || coalesce(c.d->>'previous_status', '-') || '/' ||
                (c.d->>'version') || coalesce('/' || (c.d->>'reason'), '') sig
         from changed c;"

of_worker_start oc order-created
of_worker_start os1 order-status
of_worker_start os2 order-status

# Both replicas hold partitions before anything is published, so that the
# contended phase really runs on two consumers.
for ((i = 0; i < 600; i++)); do
    a=$(of_worker_partitions os1)
    b=$(of_worker_partitions os2)
    [ "$a" -gt 0 ] && [ "$b" -gt 0 ] && [ $((a + b)) -eq 6 ] && break
    sleep 0.1
done
check "the two order-status replicas share the 6 partitions" "yes 6" \
    "$([ "$a" -gt 0 ] && [ "$b" -gt 0 ] && echo yes || echo no) $((a + b))"

# Waits until every order whose correlation id matches LIKE is final, every
# outbox row is published, and order-status has consumed every status event
# of those orders that drives a step (so nothing is in flight when the checks
# run). CONFIRMED and REJECTED drive none: the worker settles them without a
# transaction, so they leave no inbox row (docs/architecture.md).
quiesce() { # quiesce <like pattern> <number of orders> <seconds>
    wait_for "select count(*) = $2 and bool_and(status not in ('CREATED', 'INVENTORY_RESERVED'))
              from orders where correlation_id like '$1'" "$3" || true
    wait_for "select count(*) = count(published_at) from outbox" "$3" || true
    of_kafka_wait order.status \
        "select count(*) = 0 from changed c join orders o on o.id::text = c.d->>'order_id'
         where o.correlation_id like '$1' and c.d->>'status' in ('CREATED', 'INVENTORY_RESERVED')
         and not exists (select 1 from inbox i
             where i.consumer = 'order-status' and i.ce_id = c.h->>'ce_id')" "$3" || true
}

# --- 1. Happy path ----------------------------------------------------------------------
RANDOM=4242
: >"$OF_WORK/happy.tsv"
for ((i = 1; i <= 100; i++)); do
    id="$OF_TAG-h-$i"
    n=$((RANDOM % 4 + 1))
    items=
    for ((k = 0; k < n; k++)); do
        p="p-$((RANDOM % 5 + 1))"
        q=$((RANDOM % 5 + 1))
        items+="${items:+,}{\"product_id\":\"$p\",\"quantity\":$q}"
        printf '%s\t%s\t%s\n' "$id" "$p" "$q" >>"$OF_WORK/happy.tsv"
    done
    currency=
    if ((i % 10 == 0)); then currency=',"currency":"EUR"'; fi
    of_publish order.created "$id" "$id" order.created \
        "{\"customer_id\":\"c-$((i % 3 + 1))\",\"items\":[$items]$currency}"
done
sid="$OF_TAG-h-s"
# One line: kcat takes every line as one record.
of_publish_structured order.created "$sid" "$(jq -c -n --arg id "$sid" --arg t "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    '{specversion: "1.0", id: $id, type: "order.created", source: "test/op", time: $t,
      datacontenttype: "application/json",
      data: {customer_id: "c-2", items: [{product_id: "p-2", quantity: 2}, {product_id: "p-5", quantity: 1}]}}')"
printf '%s\tp-2\t2\n%s\tp-5\t1\n' "$sid" "$sid" >>"$OF_WORK/happy.tsv"
psql "$OF_URL" -XAtq -v ON_ERROR_STOP=1 -c "copy expected_lines from stdin" <"$OF_WORK/happy.tsv"
sql "create table happy as select distinct ce_id from expected_lines"

quiesce "$OF_TAG-h-%" 101 120
of_kafka_load order.created >/dev/null
H="o.correlation_id in (select ce_id from happy)"

check "one order per order.created (binary and structured)" "101 101" \
    "$(sql "select count(*) || ' ' || count(distinct o.correlation_id) from orders o where $H")"
check "every order CONFIRMED at version 3" 101 \
    "$(sql "select count(*) from orders o where $H and status = 'CONFIRMED' and version = 3
            and status_reason is null and confirmed_at is not null")"
check "the structured-mode order is confirmed like the others" "CONFIRMED 3 c-2" \
    "$(sql "select status || ' ' || version || ' ' || customer_id from orders where correlation_id = '$sid'")"
check "total_cents = sum(quantity * price snapshot)" 101 \
    "$(sql "select count(*) from orders o join (select e.ce_id, sum(e.quantity * p.price_cents) t
            from expected_lines e join products p on p.id = e.product_id group by e.ce_id) x
            on x.ce_id = o.correlation_id where o.total_cents = x.t")"
check "currency given (EUR) or defaulted (USD)" "10 91" \
    "$(sql "select count(*) filter (where currency = 'EUR' and correlation_id like '%0') || ' ' ||
                   count(*) filter (where currency = 'USD' and correlation_id not like '%0')
            from orders o where $H")"
check "item lines: quantities per product as ordered, price snapshot, reserved" 0 \
    "$(sql "with want as (select ce_id, product_id, sum(quantity) q from expected_lines group by 1, 2),
                 got as (select o.correlation_id ce_id, i.product_id, sum(i.quantity) q,
                                bool_and(i.unit_price_cents = p.price_cents and i.reserved) ok
                         from order_items i join orders o on o.id = i.order_id
                         join products p on p.id = i.product_id where $H group by 1, 2)
            select count(*) from want full join got using (ce_id, product_id)
            where want.q is distinct from got.q or not coalesce(got.ok, false)")"
check "stock decreased by exactly the ordered quantities" \
    "$(sql "select string_agg(p.id || '=' || (100000 - coalesce(x.q, 0)), ' ' order by p.id)
            from products p left join (select product_id, sum(quantity) q from expected_lines
            group by 1) x on x.product_id = p.id where p.id like 'p-%'")" \
    "$(sql "select string_agg(id || '=' || stock, ' ' order by id) from products where id like 'p-%'")"
check "one OrderProcess per order, SUCCEEDED in CONFIRMED" "101 101" \
    "$(sql "select count(*) || ' ' || count(*) filter (where e.status = 'SUCCEEDED'
                   and e.current_state = 'CONFIRMED' and e.stopped_at is not null and e.error is null)
            from executions e join orders o on o.id = e.order_id where $H and e.machine = 'OrderProcess'")"
check "OrderProcess history: CreateOrder, UpdateInventory, OrderCompleted, all positions filled" 101 \
    "$(sql "select count(*) from (select string_agg(h.seq || ':' || h.step || ':' ||
                   coalesce(h.from_state, '-') || '>' || h.to_state || ':' || h.outcome, ','
                   order by h.seq) sig,
                   bool_and(h.event_id is not null and h.topic is not null and h.partition is not null
                            and h.\"offset\" is not null) filled
            from orders o join executions e on e.order_id = o.id and e.machine = 'OrderProcess'
            join execution_history h on h.execution_id = e.id where $H group by o.id) s
            where filled and sig = '1:CreateOrder:->CREATED:applied,2:UpdateInventory:CREATED>INVENTORY_RESERVED:applied,3:OrderCompleted:INVENTORY_RESERVED>CONFIRMED:applied'")"
check "history seq 1 names the order.created record (ce_id, topic, partition, offset)" 101 \
    "$(sql "select count(*) from orders o join executions e on e.order_id = o.id and e.machine = 'OrderProcess'
            join execution_history h on h.execution_id = e.id and h.seq = 1
            join kafka_records k on k.topic = h.topic and k.partition = h.partition and k.\"offset\" = h.\"offset\"
            where $H and h.topic = '$T_CREATED' and h.event_id = o.correlation_id
              and (k.headers->>'ce_id' = h.event_id or k.value::jsonb->>'id' = h.event_id)")"
check "history seq 2 and 3 name the status events that drove them" 202 \
    "$(sql "select count(*) from orders o join executions e on e.order_id = o.id and e.machine = 'OrderProcess'
            join execution_history h on h.execution_id = e.id and h.seq in (2, 3)
            join changed c on c.partition = h.partition and c.\"offset\" = h.\"offset\"
            where $H and h.topic = '$T_STATUS' and c.h->>'ce_id' = h.event_id
              and c.d->>'order_id' = o.id::text
              and c.d->>'status' = case h.seq when 2 then 'CREATED' else 'INVENTORY_RESERVED' end")"
check "one OrderUpdate per order, RUNNING in CONFIRMED, history Start" 101 \
    "$(sql "select count(*) from orders o join executions e on e.order_id = o.id and e.machine = 'OrderUpdate'
            where $H and e.status = 'RUNNING' and e.current_state = 'CONFIRMED' and e.stopped_at is null
              and (select string_agg(h.step, ',' order by h.seq) from execution_history h
                   where h.execution_id = e.id) = 'Start'")"
check "one pending PAYMENT deadline per order" "101 101" \
    "$(sql "select count(*) || ' ' || count(distinct d.order_id) from deadlines d join orders o on o.id = d.order_id
            where $H and d.kind = 'PAYMENT' and d.fired_at is null and d.cancelled_at is null
              and d.due_at > now()")"
check "order.status carries exactly CREATED, INVENTORY_RESERVED, CONFIRMED (versions 1..3) per order" 101 \
    "$(sql "select count(*) from (select string_agg(c.sig, ',' order by c.\"offset\") s,
                   count(distinct c.partition) np
            from orders o join changed_sig c on c.d->>'order_id' = o.id::text where $H group by o.id) x
            where np = 1 and s = 'CREATED/-/1,INVENTORY_RESERVED/CREATED/2,CONFIRMED/INVENTORY_RESERVED/3'")"
check "status events: previous_status is JSON null at creation" 101 \
    "$(sql "select count(*) from orders o join changed c on c.d->>'order_id' = o.id::text
            where $H and c.d->>'status' = 'CREATED' and jsonb_typeof(c.d->'previous_status') = 'null'")"
check "status events: binary mode, ce_source per worker, subject = key = order id, correlation id" 303 \
    "$(sql "select count(*) from orders o join changed c on c.d->>'order_id' = o.id::text
            where $H and c.key = o.id::text and c.h->>'ce_subject' = o.id::text
              and c.h->>'ce_specversion' = '1.0' and c.h->>'content-type' = 'application/json'
              and c.h->>'ce_id' is not null and c.h->>'ce_time' is not null
              and c.h->>'ce_source' = case c.d->>'status' when 'CREATED' then 'orderflow/order-created'
                                      else 'orderflow/order-status' end
              and c.d->>'correlation_id' = o.correlation_id and c.d ? 'at'")"

# --- 2. Rejections ------------------------------------------------------------------------
stock_p=$(sql "select string_agg(id || '=' || stock, ' ' order by id) from products where id like 'p-%'")
of_publish order.created "$OF_TAG-x-cust" "$OF_TAG-x-cust" order.created \
    '{"customer_id":"c-nobody","items":[{"product_id":"p-1","quantity":1}]}'
of_publish order.created "$OF_TAG-x-prod" "$OF_TAG-x-prod" order.created \
    '{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":1},{"product_id":"p-none","quantity":1}]}'
of_publish order.created "$OF_TAG-x-both" "$OF_TAG-x-both" order.created \
    '{"customer_id":"c-nobody","items":[{"product_id":"p-none","quantity":1}]}'
of_publish order.created "$OF_TAG-x-oos" "$OF_TAG-x-oos" order.created \
    '{"customer_id":"c-1","items":[{"product_id":"s-a","quantity":3},{"product_id":"s-b","quantity":2}]}'
quiesce "$OF_TAG-x-%" 4 120

order_row() { # order_row <ce_id>: status reason version
    sql "select status || ' ' || coalesce(status_reason, '-') || ' ' || version from orders where correlation_id = '$1'"
}
process_row() { # process_row <ce_id>: OrderProcess status, state, error; then history
    sql "select e.status || ' ' || e.current_state || ' ' || coalesce(e.error, '-') || ' | ' ||
                (select string_agg(h.step || ':' || coalesce(h.from_state, '-') || '>' || h.to_state, ','
                                   order by h.seq) from execution_history h where h.execution_id = e.id)
         from executions e join orders o on o.id = e.order_id
         where o.correlation_id = '$1' and e.machine = 'OrderProcess'"
}
events_of() { # events_of <ce_id>: the order's status events in order
    sql "select string_agg(c.sig || '@' || split_part(c.h->>'ce_source', '/', 2), ',' order by c.\"offset\")
         from changed_sig c join orders o on o.id::text = c.d->>'order_id' where o.correlation_id = '$1'"
}
check "unknown customer: REJECTED UNKNOWN_CUSTOMER at creation" "REJECTED UNKNOWN_CUSTOMER 1" \
    "$(order_row "$OF_TAG-x-cust")"
check "unknown customer: OrderProcess FAILED" "FAILED REJECTED UNKNOWN_CUSTOMER | CreateOrder:->REJECTED" \
    "$(process_row "$OF_TAG-x-cust")"
check "unknown customer: one REJECTED event" "REJECTED/-/1/UNKNOWN_CUSTOMER@order-created" \
    "$(events_of "$OF_TAG-x-cust")"
check "unknown product: REJECTED UNKNOWN_PRODUCT at creation" "REJECTED UNKNOWN_PRODUCT 1" \
    "$(order_row "$OF_TAG-x-prod")"
check "unknown product: OrderProcess FAILED" "FAILED REJECTED UNKNOWN_PRODUCT | CreateOrder:->REJECTED" \
    "$(process_row "$OF_TAG-x-prod")"
check "unknown product: one REJECTED event" "REJECTED/-/1/UNKNOWN_PRODUCT@order-created" \
    "$(events_of "$OF_TAG-x-prod")"
check "unknown product: the line is kept without a price" "p-1:250 p-none:-" \
    "$(sql "select string_agg(i.product_id || ':' || coalesce(i.unit_price_cents::text, '-'), ' ' order by i.line)
            from order_items i join orders o on o.id = i.order_id where o.correlation_id = '$OF_TAG-x-prod'")"
check "unknown customer and product: the customer is reported" "REJECTED UNKNOWN_CUSTOMER 1" \
    "$(order_row "$OF_TAG-x-both")"
check "out of stock on the second line: REJECTED OUT_OF_STOCK by UpdateInventory" "REJECTED OUT_OF_STOCK 2" \
    "$(order_row "$OF_TAG-x-oos")"
check "out of stock: OrderProcess FAILED after UpdateInventory" \
    "FAILED REJECTED OUT_OF_STOCK | CreateOrder:->CREATED,UpdateInventory:CREATED>REJECTED" \
    "$(process_row "$OF_TAG-x-oos")"
check "out of stock: the history names the product short of stock" "s-b 2 1" \
    "$(sql "select (h.detail->>'product_id') || ' ' || (h.detail->>'requested') || ' ' || (h.detail->>'available')
            from execution_history h join executions e on e.id = h.execution_id join orders o on o.id = e.order_id
            where o.correlation_id = '$OF_TAG-x-oos' and h.step = 'UpdateInventory'")"
check "out of stock: events CREATED then REJECTED" \
    "CREATED/-/1@order-created,REJECTED/CREATED/2/OUT_OF_STOCK@order-status" "$(events_of "$OF_TAG-x-oos")"
check "rejected orders: no line reserved, no OrderUpdate, no deadline" "0 0 0" \
    "$(sql "select (select count(*) from order_items i join orders o on o.id = i.order_id
                    where o.correlation_id like '$OF_TAG-x-%' and i.reserved) || ' ' ||
                   (select count(*) from executions e join orders o on o.id = e.order_id
                    where o.correlation_id like '$OF_TAG-x-%' and e.machine = 'OrderUpdate') || ' ' ||
                   (select count(*) from deadlines d join orders o on o.id = d.order_id
                    where o.correlation_id like '$OF_TAG-x-%')")"
check "rejections touched no stock (no partial reservation)" "$stock_p s-a=10 s-b=1" \
    "$(sql "select string_agg(id || '=' || stock, ' ' order by id) from products where id like 'p-%' or id like 's-%'")"
# The whole stock of the first product is still there to take.
of_publish order.created "$OF_TAG-x-all" "$OF_TAG-x-all" order.created \
    '{"customer_id":"c-3","items":[{"product_id":"s-a","quantity":10}]}'
quiesce "$OF_TAG-x-all" 1 120
check "the first product's full stock can be reserved afterwards" "CONFIRMED - 3 s-a=0" \
    "$(order_row "$OF_TAG-x-all") $(sql "select 's-a=' || stock from products where id = 's-a'")"

# --- 3. Contended stock, two replicas ------------------------------------------------------
mark1=$(wc -l <"$OF_WORK/os1.log")
mark2=$(wc -l <"$OF_WORK/os2.log")
for ((i = 1; i <= 200; i++)); do
    of_publish order.created "$OF_TAG-r-$i" "$OF_TAG-r-$i" order.created \
        "{\"customer_id\":\"c-$((i % 3 + 1))\",\"items\":[{\"product_id\":\"r-1\",\"quantity\":1}]}"
done
quiesce "$OF_TAG-r-%" 200 180
R="o.correlation_id like '$OF_TAG-r-%'"
check "200 orders for 50 units: 50 CONFIRMED, 150 REJECTED OUT_OF_STOCK" "200 50 150" \
    "$(sql "select count(*) || ' ' || count(*) filter (where status = 'CONFIRMED' and version = 3) || ' ' ||
                   count(*) filter (where status = 'REJECTED' and status_reason = 'OUT_OF_STOCK' and version = 2)
            from orders o where $R")"
check "stock exactly 0, 50 units held by the confirmed orders" "0 50 50" \
    "$(sql "select (select stock from products where id = 'r-1') || ' ' ||
                   sum(i.quantity) filter (where i.reserved) || ' ' ||
                   count(*) filter (where i.reserved and o.status = 'CONFIRMED')
            from order_items i join orders o on o.id = i.order_id where $R")"
check "contended orders: executions SUCCEEDED / FAILED to match" "50 150" \
    "$(sql "select count(*) filter (where e.status = 'SUCCEEDED' and o.status = 'CONFIRMED') || ' ' ||
                   count(*) filter (where e.status = 'FAILED' and e.error = 'OUT_OF_STOCK' and o.status = 'REJECTED')
            from executions e join orders o on o.id = e.order_id where $R and e.machine = 'OrderProcess'")"
check "contended orders: events CREATED 200, INVENTORY_RESERVED 50, CONFIRMED 50, REJECTED 150" \
    "CONFIRMED=50 CREATED=200 INVENTORY_RESERVED=50 REJECTED=150" \
    "$(sql "select string_agg(s || '=' || n, ' ' order by s) from (select c.d->>'status' s, count(distinct c.h->>'ce_id') n
            from changed c join orders o on o.id::text = c.d->>'order_id' where $R group by 1) x")"
check "nothing dead-lettered (a negative stock would have aborted a transaction)" 0 \
    "$(sql "select count(*) from dead_letters")"
events_in() { # events_in <log> <from line>: status events the replica handled since the mark
    tail -n +"$(($2 + 1))" "$1" |
        jq -R -r --arg t "$T_STATUS" 'fromjson? | select(.topic == $t and (.msg | startswith("event ")))
                                     | .msg' | wc -l
}
n1=$(events_in "$OF_WORK/os1.log" "$mark1")
n2=$(events_in "$OF_WORK/os2.log" "$mark2")
echo "# contended phase: os1 handled $n1 events, os2 $n2"
check "both replicas handled contended events" "yes yes" \
    "$([ "$n1" -gt 0 ] && echo yes || echo no) $([ "$n2" -gt 0 ] && echo yes || echo no)"

# --- 4. Redelivery -----------------------------------------------------------------------------
d1="$OF_TAG-d-1"
p1_before=$(sql "select stock from products where id = 'p-1'")
body='{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":2}]}'
of_publish order.created "$d1" "$d1" order.created "$body"
of_publish order.created "$d1" "$d1" order.created "$body"
quiesce "$d1" 1 120
# Once more, long after; the order behind it (same key, same partition) shows it was consumed.
of_publish order.created "$d1" "$d1" order.created "$body"
of_publish order.created "$d1" "$OF_TAG-d-2" order.created \
    '{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":1}]}'
quiesce "$OF_TAG-d-%" 2 120
check "the same order.created three times makes one order" "1 CONFIRMED" \
    "$(sql "select count(*) || ' ' || max(status) from orders where correlation_id = '$d1'")"
check "order-created recorded the ce_id once" 1 \
    "$(sql "select count(*) from inbox where consumer = 'order-created' and ce_id = '$d1'")"
check "stock taken once for it" "$((p1_before - 3))" "$(sql "select stock from products where id = 'p-1'")"
check "order.created carries the event three times" 3 \
    "$(of_kafka_load order.created >/dev/null
       sql "select count(*) from kafka_records where topic = '$T_CREATED' and headers->>'ce_id' = '$d1'")"

x=$(sql "select id from orders where correlation_id = '$OF_TAG-h-1'")
stock_before=$(sql "select string_agg(id || '=' || stock, ' ' order by id) from products")
republish() { # republish <status of x's event to copy> [new ce_id]
    local value hl args=() i
    value=$(sql "select k.value from changed c join kafka_records k on k.topic = '$T_STATUS'
                 and k.partition = c.partition and k.\"offset\" = c.\"offset\"
                 where c.d->>'order_id' = '$x' and c.d->>'status' = '$1'")
    mapfile -t hl < <(sql "select k.header_list from changed c join kafka_records k on k.topic = '$T_STATUS'
                           and k.partition = c.partition and k.\"offset\" = c.\"offset\"
                           where c.d->>'order_id' = '$x' and c.d->>'status' = '$1'" | jq -r '.[]')
    for ((i = 0; i < ${#hl[@]}; i += 2)); do
        if [ "${hl[i]}" = ce_id ] && [ -n "${2:-}" ]; then
            args+=(-H "ce_id=$2")
        else
            args+=(-H "${hl[i]}=${hl[i + 1]}")
        fi
    done
    of_publish_raw order.status "$x" "$value" "${args[@]}"
}
copied=$(sql "select c.h->>'ce_id' from changed c where c.d->>'order_id' = '$x' and c.d->>'status' = 'CREATED'")
republish CREATED
republish INVENTORY_RESERVED "$OF_TAG-stale-1"
# The update behind them in the same partition (key = order id) shows they were consumed.
of_publish order.status "$x" "$OF_TAG-u-1" order.status.update \
    "{\"order_id\":\"$x\",\"status\":\"PAID\",\"expected_version\":3}"
wait_for "select status = 'PAID' from orders where id = '$x'" 120 || true
check "redelivered CREATED event: OrderProcess history unchanged" \
    "CreateOrder,UpdateInventory,OrderCompleted" \
    "$(sql "select string_agg(h.step, ',' order by h.seq) from execution_history h join executions e
            on e.id = h.execution_id where e.order_id = '$x' and e.machine = 'OrderProcess'")"
check "redelivered and stale events: no stock moved" "$stock_before" \
    "$(sql "select string_agg(id || '=' || stock, ' ' order by id) from products")"
check "inbox: the copied ce_id once, the stale one consumed" "1 1" \
    "$(sql "select (select count(*) from inbox where consumer = 'order-status' and ce_id = '$copied') || ' ' ||
                   (select count(*) from inbox where consumer = 'order-status' and ce_id = '$OF_TAG-stale-1')")"
of_kafka_load order.status >/dev/null
copy_off=$(sql "select max(\"offset\") from kafka_records where topic = '$T_STATUS' and headers->>'ce_id' = '$copied'")
check "order-status logged the copy as a duplicate" 1 \
    "$(cat "$OF_WORK/os1.log" "$OF_WORK/os2.log" |
        jq -R -r --arg t "$T_STATUS" --argjson o "${copy_off:-null}" \
            'fromjson? | select(.topic == $t and .offset == $o and .msg == "duplicate event skipped") | .msg' |
        wc -l)"

# --- 5. Order updates ------------------------------------------------------------------------
check "PAID with the matching expected_version applies" "PAID 4" \
    "$(sql "select status || ' ' || version from orders where id = '$x'")"
of_publish order.status "$x" "$OF_TAG-u-2" order.status.update \
    "{\"order_id\":\"$x\",\"status\":\"SHIPPED\",\"expected_version\":3}"
of_publish order.status "$x" "$OF_TAG-u-3" order.status.update \
    "{\"order_id\":\"$x\",\"status\":\"DELIVERED\"}"
of_publish order.status "$x" "$OF_TAG-u-4" order.status.update \
    "{\"order_id\":\"$x\",\"status\":\"SHIPPED\",\"expected_version\":4}"
wait_for "select status = 'SHIPPED' from orders where id = '$x'" 120 || true
wait_for "select count(*) = count(published_at) from outbox" 120 || true
check "stale SHIPPED and illegal DELIVERED changed nothing; the valid SHIPPED applied" "SHIPPED 5" \
    "$(sql "select status || ' ' || version from orders where id = '$x'")"
check "OrderUpdate history records the rejected updates" \
    "Start:INVENTORY_RESERVED>CONFIRMED:applied:,RecordPayment:CONFIRMED>PAID:applied:u-1,SHIPPED:PAID>-:rejected:u-2,DELIVERED:PAID>-:rejected:u-3,RecordShipment:PAID>SHIPPED:applied:u-4" \
    "$(sql "select string_agg(h.step || ':' || coalesce(h.from_state, '-') || '>' || coalesce(h.to_state, '-') || ':' ||
                   h.outcome || ':' || case when h.seq = 1 then '' else replace(h.event_id, '$OF_TAG-', '') end,
                   ',' order by h.seq)
            from execution_history h join executions e on e.id = h.execution_id
            where e.order_id = '$x' and e.machine = 'OrderUpdate'")"
check "rejected updates say why" \
    "expected version 3, order is at version 4|DELIVERED is not allowed from PAID" \
    "$(sql "select string_agg(h.detail->>'reason', '|' order by h.seq) from execution_history h
            join executions e on e.id = h.execution_id
            where e.order_id = '$x' and e.machine = 'OrderUpdate' and h.outcome = 'rejected'")"
check "OrderUpdate still RUNNING, payment deadline cancelled" "RUNNING SHIPPED true" \
    "$(sql "select e.status || ' ' || e.current_state || ' ' ||
                   (select (cancelled_at is not null and fired_at is null)::text from deadlines
                    where order_id = '$x' and kind = 'PAYMENT')
            from executions e where e.order_id = '$x' and e.machine = 'OrderUpdate'")"
of_kafka_load order.status >/dev/null
check "order.status: PAID (4) and SHIPPED (5) published once, nothing for the rejected updates" \
    "PAID/CONFIRMED/4@order-status,SHIPPED/PAID/5@order-status" \
    "$(sql "select string_agg(c.sig || '@' || split_part(c.h->>'ce_source', '/', 2), ',' order by c.\"offset\")
            from changed_sig c where c.d->>'order_id' = '$x' and (c.d->>'version')::int > 3")"

# --- Whole run ---------------------------------------------------------------------------------
check "no dead letters, every outbox row published" "0 0" \
    "$(sql "select (select count(*) from dead_letters) || ' ' ||
                   (select count(*) from outbox where published_at is null)")"
check "DLQ topics are empty" "0 0" "$(of_kafka_load order.created.dlq) $(of_kafka_load order.status.dlq)"
check "every (order, version) on order.status has one ce_id" 0 \
    "$(sql "select count(*) from (select c.d->>'order_id', c.d->>'version' from changed c
            where c.h->>'ce_id' <> '$OF_TAG-stale-1' group by 1, 2 having count(distinct c.h->>'ce_id') > 1) x")"
of_finish
