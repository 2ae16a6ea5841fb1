#!/usr/bin/env bash
# test_returns.sh: the ReturnRefund machine end to end on the real stack.
#
# order-created, order-status and return-requested (later a second
# return-requested replica in the same group) run against a scratch database
# and prefixed topics. Orders are made DELIVERED the way upstream would
# (order.created, then PAID, SHIPPED, DELIVERED updates); product prices are
# raised after ordering so that refunds must come from the order's price
# snapshot. Phases, each checked in Postgres and on Kafka:
#   1. a full return: REFUND_COMPLETED at version 5, the five steps in the
#      ReturnRefund history (each caused by the record that names it), stock
#      back, one refund at the snapshot price, the order RETURNED through
#      ApplyReturn, return.status.changed versions 1..5 and the
#      order.status.update RETURNED on Kafka;
#   2. a partial return, then the rest (PARTIALLY_RETURNED, then RETURNED),
#      then one more (rejected: the order is RETURNED); two partial returns
#      back to back that together return everything;
#   3. two returns of one order that together exceed what was bought,
#      published back to back: with one replica, with two replicas (same
#      key), and on two partitions held by different replicas (the order row
#      lock, not the partition, must decide): exactly one accepted;
#   4. rejections: not delivered, window expired (delivered_at moved back
#      31 days; 29 days is still accepted), unknown item;
#   5. an unknown order: dead-lettered with UNKNOWN_ORDER;
#   6. the same return.requested (same ce_id) three times: one return;
#   7. that request and its order's order.created delivered again after
#      their inbox rows were pruned: duplicates (their effects are on
#      record), no dead letter.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup ret
of_topics_create
T_STATUS="${OF_PREFIX}order.status"
T_RR="${OF_PREFIX}return.requested"
WENV=(ORDERFLOW_HTTP_PORT=0 ORDERFLOW_OUTBOX_SWEEP_GRACE=3s KAFKA_MESSAGE_TIMEOUT_MS=2500 ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s)

sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values
         ('r-a', 'Kettle', 1250, 1000), ('r-b', 'Mug', 399, 1000), ('r-c', 'Spoon', 75, 1000),
         ('r-k', 'Contended', 2000, 1000), ('r-x', 'Never ordered', 10, 1000);
     -- Every return requested: its lines, and whether it must be accepted
     -- (null: one of a contended pair, either may win).
     create table req_items (name text not null, product_id text not null, quantity integer not null,
                             ok boolean);
     create view rq as
         select r.*, replace(r.source_event_id, '$OF_TAG-q-', '') name from returns r
         where r.source_event_id like '$OF_TAG-q-%';
     -- Kafka views over the records of_kafka_load copies in.
     create view requests as
         select k.partition, k.\"offset\", k.key, k.headers h, k.value v from kafka_records k
         where k.topic = '$T_RR' and k.headers->>'ce_type' = 'return.requested';
     create view rchanged as
         select k.partition, k.\"offset\", k.key, k.headers h, k.value::jsonb d from kafka_records k
         where k.topic = '$T_RR' and k.headers->>'ce_type' = 'return.status.changed';
     create view ostatus as
         select k.partition, k.\"offset\", k.key, k.headers h, k.value::jsonb d, k.headers->>'ce_type' t
         from kafka_records k where k.topic = '$T_STATUS';"

of_worker_start oc order-created "${WENV[@]}"
of_worker_start os order-status "${WENV[@]}"
of_worker_start rr1 return-requested "${WENV[@]}"

held() { # held NAME: the partitions NAME holds now, sorted, space separated
    local log="$OF_WORK/$1.log" start
    start=$(grep -n '^=== .*: start ' "$log" | tail -n 1 | cut -d: -f1 || true)
    tail -n +"${start:-1}" "$log" |
        jq -R -r 'fromjson? | select(.msg == "partition assigned" or .msg == "partition revoked")
                  | "\(.msg) \(.partition)"' |
        awk '$2 == "assigned" {h[$3] = 1} $2 == "revoked" {delete h[$3]} END {for (p in h) print p}' |
        sort -n | tr '\n' ' ' | sed 's/ $//'
}
for ((i = 0; i < 600; i++)); do
    [ "$(of_worker_partitions oc)" -eq 6 ] && [ "$(of_worker_partitions os)" -eq 6 ] &&
        [ "$(of_worker_partitions rr1)" -eq 6 ] && break
    sleep 0.1
done

oid() { sql "select id from orders where correlation_id = '$OF_TAG-o-$1'"; }

# Waits until no event is in flight: the returns named by LIKE are final,
# every outbox row is published and consumed by the worker that reads its topic.
settle() { # settle <name like> <number of returns> <seconds>
    wait_for "select count(*) = $2 and coalesce(bool_and(status in ('REJECTED', 'REFUND_COMPLETED')), true)
              from rq where name like '$1'" "$3" || true
    wait_for "select count(*) = count(published_at) from outbox" "$3" || true
    wait_for "select count(*) = 0 from outbox b where b.topic in ('$T_RR', '$T_STATUS') and $(of_sql_leaves_inbox b)
              and not exists (select 1 from inbox i where i.ce_id = b.id::text and i.consumer =
                  case b.topic when '$T_RR' then 'return-requested' else 'order-status' end)" "$3" || true
}

# --- Orders, delivered ------------------------------------------------------------------
# name -> lines. k*: contended pairs; nd stays CONFIRMED; win/win29 get an old delivered_at.
declare -A ORDERS=(
    [full]='r-a:3 r-b:2 r-c:5' [part]='r-a:4 r-b:1' [pair]='r-a:2 r-b:2'
    [k1]='r-k:3' [k2]='r-k:3' [k3]='r-k:3' [k4]='r-k:3' [k5]='r-k:3' [k6]='r-k:3' [k7]='r-k:3'
    [nd]='r-a:1' [win]='r-a:1' [win29]='r-b:1' [unk]='r-a:1 r-b:1' [dup]='r-c:3')
for name in "${!ORDERS[@]}"; do
    items=
    for line in ${ORDERS[$name]}; do
        items+="${items:+,}{\"product_id\":\"${line%:*}\",\"quantity\":${line#*:}}"
    done
    of_publish order.created "$OF_TAG-o-$name" "$OF_TAG-o-$name" order.created \
        "{\"customer_id\":\"c-1\",\"items\":[$items]}"
done
n_orders=${#ORDERS[@]}
O="correlation_id like '$OF_TAG-o-%'"
wait_for "select count(*) = $n_orders and bool_and(status = 'CONFIRMED') from orders where $O" 120 || true
check "every order CONFIRMED" "$n_orders" "$(sql "select count(*) from orders where $O and status = 'CONFIRMED'")"
# The price snapshot is taken; the prices change afterwards.
sql "create table price0 as select id, price_cents from products;
     create table stock0 as select id, stock from products;
     update products set price_cents = price_cents * 3 + 1"
check "order lines carry the price at ordering time" 0 \
    "$(sql "select count(*) from order_items i join price0 p on p.id = i.product_id
            where i.unit_price_cents is distinct from p.price_cents")"

step=4
for st in PAID SHIPPED DELIVERED; do
    for name in "${!ORDERS[@]}"; do
        [ "$name" = nd ] && continue
        x=$(oid "$name")
        of_publish order.status "$x" "$OF_TAG-u-$name-$st" order.status.update \
            "{\"order_id\":\"$x\",\"status\":\"$st\",\"expected_version\":$((step - 1))}"
    done
    wait_for "select count(*) = $((n_orders - 1)) from orders where $O and status = '$st' and version = $step" 120 || true
    step=$((step + 1))
done
check "every order but one DELIVERED at version 6, delivered_at set" "$((n_orders - 1))" \
    "$(sql "select count(*) from orders where $O and status = 'DELIVERED' and version = 6 and delivered_at is not null")"
sql "update orders set delivered_at = now() - interval '31 days' where id = '$(oid win)';
     update orders set delivered_at = now() - interval '29 days' where id = '$(oid win29)'" >/dev/null

# request <name> <order> <product:qty ...> [-- kcat args]: one return.requested, key = order id.
# ok: whether it must be accepted (t, f, or null when either of a pair may win).
request() { # request <name> <order> <ok> <lines> [kcat args...]
    local name=$1 x items='' line
    x=$(oid "$2")
    for line in $4; do
        items+="${items:+,}{\"product_id\":\"${line%:*}\",\"quantity\":${line#*:}}"
        sql "insert into req_items values ('$name', '${line%:*}', ${line#*:}, $3)"
    done
    shift 4
    of_publish return.requested "$x" "$OF_TAG-q-$name" return.requested \
        "{\"order_id\":\"$x\",\"items\":[$items],\"reason\":\"test $name\"}" "$@"
}
ret_row() { # ret_row <name>: status reason version refund
    sql "select status || ' ' || coalesce(status_reason, '-') || ' ' || version || ' ' ||
                coalesce(refund_cents::text, '-') from rq where name = '$1'"
}
order_row() { sql "select status || ' ' || version from orders where id = '$(oid "$1")'"; }
# Refund at the price snapshot of the request's lines.
want_refund() { # want_refund <name>
    sql "select sum(q.quantity * p.price_cents) from req_items q join price0 p on p.id = q.product_id
         where q.name = '$1'"
}
hist() { # hist <name>: the ReturnRefund history of the return
    sql "select string_agg(h.seq || ':' || h.step || ':' || coalesce(h.from_state, '-') || '>' ||
                coalesce(h.to_state, '-') || ':' || h.outcome, ',' order by h.seq)
         from rq r join executions e on e.return_id = r.id and e.machine = 'ReturnRefund'
         join execution_history h on h.execution_id = e.id where r.name = '$1'"
}
ret_events() { # ret_events <name>: status/previous/version[/reason] of its return.status.changed
    sql "select string_agg((c.d->>'status') || '/' || coalesce(c.d->>'previous_status', '-') || '/' ||
                (c.d->>'version') || coalesce('/' || (c.d->>'reason'), ''), ',' order by c.\"offset\")
         from rchanged c join rq r on r.id::text = c.d->>'return_id' where r.name = '$1'"
}
order_updates() { # order_updates <order>: OrderUpdate history rows after RecordDelivery
    sql "select string_agg(h.step || ':' || coalesce(h.from_state, '-') || '>' || coalesce(h.to_state, '-') ||
                ':' || h.outcome, ',' order by h.seq)
         from executions e join execution_history h on h.execution_id = e.id
         where e.order_id = '$(oid "$1")' and e.machine = 'OrderUpdate'
           and h.seq > (select h2.seq from execution_history h2 where h2.execution_id = e.id
                        and h2.step = 'RecordDelivery')"
}
# Stock of the non-contended products = stock after ordering + what the accepted returns brought back.
stock_ok() {
    sql "select string_agg(s.id || '=' || (s.stock + coalesce(x.q, 0)), ' ' order by s.id) from stock0 s
         left join (select q.product_id, sum(q.quantity) q from req_items q where q.ok group by 1) x
         on x.product_id = s.id where s.id <> 'r-k'"
}
stock_now() { sql "select string_agg(id || '=' || stock, ' ' order by id) from products where id <> 'r-k'"; }

# --- 1. A full return ----------------------------------------------------------------------
request full full true 'r-a:3 r-b:2 r-c:5'
settle full 1 120
of_kafka_load return.requested >/dev/null
of_kafka_load order.status >/dev/null
x=$(oid full)
rid=$(sql "select id from rq where name = 'full'")
want=$(want_refund full)
echo "# full return $rid of order $x, refund $want cents at the snapshot"
check "full return: REFUND_COMPLETED at version 5 with the snapshot refund" "REFUND_COMPLETED - 5 $want" \
    "$(ret_row full)"
check "the snapshot refund differs from one at today's prices" t \
    "$(sql "select $want <> sum(q.quantity * p.price_cents) from req_items q join products p
            on p.id = q.product_id where q.name = 'full'")"
check "full return: row fields (order, reason, correlation id = the request's ce_id)" "$x|test full|$OF_TAG-q-full" \
    "$(sql "select order_id || '|' || reason || '|' || correlation_id from rq where name = 'full'")"
check "full return: lines as requested, priced from the order's snapshot" "r-a:3:1250,r-b:2:399,r-c:5:75" \
    "$(sql "select string_agg(i.product_id || ':' || i.quantity || ':' || i.unit_price_cents, ',' order by i.product_id)
            from return_items i where i.return_id = '$rid'")"
check "full return: one ReturnRefund, SUCCEEDED in REFUND_COMPLETED, input = the request's data" \
    "1 SUCCEEDED REFUND_COMPLETED true true" \
    "$(sql "select count(*) || ' ' || max(e.status) || ' ' || max(e.current_state) || ' ' ||
                   bool_and(e.stopped_at is not null and e.error is null and e.order_id = '$x') || ' ' ||
                   bool_and(e.input = (select v::jsonb from requests where h->>'ce_id' = '$OF_TAG-q-full'))
            from executions e where e.return_id = '$rid' and e.machine = 'ReturnRefund'")"
check "full return: history InitiateReturn .. RefundCompleted" \
    "1:InitiateReturn:->INITIATED:applied,2:ProcessReturn:INITIATED>RETURN_PROCESSED:applied,3:InitiateRefund:RETURN_PROCESSED>REFUND_INITIATED:applied,4:ProcessRefund:REFUND_INITIATED>REFUND_PROCESSED:applied,5:RefundCompleted:REFUND_PROCESSED>REFUND_COMPLETED:applied" \
    "$(hist full)"
check "history seq 1 names the return.requested record (ce_id, topic, partition, offset)" 1 \
    "$(sql "select count(*) from executions e join execution_history h on h.execution_id = e.id and h.seq = 1
            join requests k on k.partition = h.partition and k.\"offset\" = h.\"offset\"
            where e.return_id = '$rid' and h.topic = '$T_RR' and h.event_id = '$OF_TAG-q-full'
              and k.h->>'ce_id' = h.event_id")"
check "history seq 2..5 name the return.status.changed (from state, version seq - 1) that drove them" 4 \
    "$(sql "select count(*) from executions e join execution_history h on h.execution_id = e.id and h.seq > 1
            join rchanged c on c.partition = h.partition and c.\"offset\" = h.\"offset\"
            where e.return_id = '$rid' and h.topic = '$T_RR' and c.h->>'ce_id' = h.event_id
              and c.d->>'return_id' = '$rid' and c.d->>'status' = h.from_state
              and (c.d->>'version')::int = h.seq - 1")"
check "RefundCompleted's detail names the order update" RETURNED \
    "$(sql "select h.detail->>'order_update' from executions e join execution_history h on h.execution_id = e.id
            where e.return_id = '$rid' and h.step = 'RefundCompleted'")"
check "full return: exactly one refund, the snapshot amount, cause RETURN" "1 $want RETURN $x" \
    "$(sql "select count(*) || ' ' || max(amount_cents) || ' ' || max(cause) || ' ' || max(order_id::text)
            from refunds where return_id = '$rid'")"
check "stock back exactly by the returned quantities" "$(stock_ok)" "$(stock_now)"
check "order RETURNED at version 7" "RETURNED 7" "$(order_row full)"
check "OrderUpdate SUCCEEDED in RETURNED, ApplyReturn in its history" \
    "SUCCEEDED RETURNED ApplyReturn:DELIVERED>RETURNED:applied" \
    "$(sql "select status || ' ' || current_state from executions where order_id = '$x' and machine = 'OrderUpdate'") $(order_updates full)"
check "return.status.changed versions 1..5 on Kafka" \
    "INITIATED/-/1,RETURN_PROCESSED/INITIATED/2,REFUND_INITIATED/RETURN_PROCESSED/3,REFUND_PROCESSED/REFUND_INITIATED/4,REFUND_COMPLETED/REFUND_PROCESSED/5" \
    "$(ret_events full)"
check "return events: key = subject = order id, correlation_id = the request's ce_id, own source, binary mode" 5 \
    "$(sql "select count(*) from rchanged c where c.d->>'return_id' = '$rid' and c.key = '$x'
              and c.h->>'ce_subject' = '$x' and c.d->>'order_id' = '$x'
              and c.d->>'correlation_id' = '$OF_TAG-q-full' and c.h->>'ce_source' = 'orderflow/return-requested'
              and c.h->>'ce_specversion' = '1.0' and c.h->>'content-type' = 'application/json'
              and c.h->>'ce_time' is not null and c.d ? 'at'")"
check "return events: previous_status is JSON null on INITIATED" null \
    "$(sql "select jsonb_typeof(c.d->'previous_status') from rchanged c where c.d->>'return_id' = '$rid'
            and c.d->>'status' = 'INITIATED'")"
check "return events: refund_cents, where given, is the snapshot refund; given on REFUND_COMPLETED" "0 $want" \
    "$(sql "select count(*) filter (where c.d ? 'refund_cents' and (c.d->>'refund_cents')::bigint <> $want) || ' ' ||
                   coalesce(max(c.d->>'refund_cents') filter (where c.d->>'status' = 'REFUND_COMPLETED'), '-')
            from rchanged c where c.d->>'return_id' = '$rid'")"
check "return events stay in the request's partition" 1 \
    "$(sql "select count(distinct partition) from (select partition from rchanged where d->>'return_id' = '$rid'
            union all select partition from requests where h->>'ce_id' = '$OF_TAG-q-full') x")"
check "order.status.update RETURNED from return-requested on order.status (key, subject, reason)" \
    "1 RETURNED|return $rid" \
    "$(sql "select count(*) || ' ' || max((d->>'status') || '|' || (d->>'reason')) from ostatus
            where t = 'order.status.update' and d->>'order_id' = '$x' and key = '$x' and h->>'ce_subject' = '$x'
              and h->>'ce_source' = 'orderflow/return-requested'")"
check "that update is the event ApplyReturn recorded" 1 \
    "$(sql "select count(*) from executions e join execution_history h on h.execution_id = e.id
            join ostatus k on k.partition = h.partition and k.\"offset\" = h.\"offset\"
            where e.order_id = '$x' and e.machine = 'OrderUpdate' and h.step = 'ApplyReturn'
              and h.topic = '$T_STATUS' and k.h->>'ce_id' = h.event_id and k.t = 'order.status.update'")"
check "order.status.changed RETURNED (version 7) from order-status" "RETURNED/DELIVERED/7@orderflow/order-status" \
    "$(sql "select string_agg((d->>'status') || '/' || (d->>'previous_status') || '/' || (d->>'version') || '@' ||
                   (h->>'ce_source'), ',') from ostatus where t = 'order.status.changed' and d->>'order_id' = '$x'
                   and (d->>'version')::int > 6")"

# --- 2. Partial returns ----------------------------------------------------------------------
request part1 part true 'r-a:1'
settle 'part%' 1 120
check "partial return: REFUND_COMPLETED with its refund" "REFUND_COMPLETED - 5 1250" "$(ret_row part1)"
check "order PARTIALLY_RETURNED at version 7" "PARTIALLY_RETURNED 7" "$(order_row part)"
request part2 part true 'r-a:3 r-b:1'
settle 'part%' 2 120
check "the rest: REFUND_COMPLETED with its refund" "REFUND_COMPLETED - 5 $((3 * 1250 + 399))" "$(ret_row part2)"
check "order RETURNED at version 8" "RETURNED 8" "$(order_row part)"
check "RefundCompleted detail: PARTIALLY_RETURNED, then RETURNED" "PARTIALLY_RETURNED RETURNED" \
    "$(sql "select string_agg(h.detail->>'order_update', ' ' order by r.name) from rq r
            join executions e on e.return_id = r.id join execution_history h on h.execution_id = e.id
            where r.name in ('part1', 'part2') and h.step = 'RefundCompleted'")"
check "OrderUpdate: two ApplyReturn rows" \
    "ApplyReturn:DELIVERED>PARTIALLY_RETURNED:applied,ApplyReturn:PARTIALLY_RETURNED>RETURNED:applied" \
    "$(order_updates part)"
check "two refunds: one per return, the right amounts, summing to the order total" \
    "1250,4149 $(sql "select total_cents from orders where id = '$(oid part)'")" \
    "$(sql "select string_agg(f.amount_cents::text, ',' order by f.amount_cents) || ' ' || sum(f.amount_cents)
            from refunds f join rq r on r.id = f.return_id where r.name like 'part%' and f.cause = 'RETURN'")"
request part3 part false 'r-a:1'
settle 'part%' 3 120
check "a further return of a RETURNED order: REJECTED ORDER_NOT_DELIVERED" "REJECTED ORDER_NOT_DELIVERED 1 -" \
    "$(ret_row part3)"
# Two partial returns back to back that together return everything.
request pair1 pair true 'r-a:2'
request pair2 pair true 'r-b:2'
settle 'pair%' 2 120
check "back-to-back partial returns: both REFUND_COMPLETED" \
    "REFUND_COMPLETED - 5 2500|REFUND_COMPLETED - 5 798" "$(ret_row pair1)|$(ret_row pair2)"
check "back-to-back partial returns: the order ends RETURNED" RETURNED \
    "$(sql "select status from orders where id = '$(oid pair)'")"
echo "# back-to-back partial returns, OrderUpdate after delivery: $(order_updates pair)"
check "stock back by every accepted return so far" "$(stock_ok)" "$(stock_now)"

# --- 3. Returns that together exceed what was bought ------------------------------------------
# One replica: k1..k3, the two requests of each back to back (same key, same partition).
for k in k1 k2 k3; do
    request "$k-a" "$k" true 'r-k:2'
    request "$k-b" "$k" false 'r-k:2'
done
settle 'k%' 6 120
check "one replica: the first of each pair accepted, the second REJECTED QUANTITY_EXCEEDED" \
    "REFUND_COMPLETED - 5 4000|REJECTED QUANTITY_EXCEEDED 1 -|REFUND_COMPLETED - 5 4000|REJECTED QUANTITY_EXCEEDED 1 -|REFUND_COMPLETED - 5 4000|REJECTED QUANTITY_EXCEEDED 1 -" \
    "$(ret_row k1-a)|$(ret_row k1-b)|$(ret_row k2-a)|$(ret_row k2-b)|$(ret_row k3-a)|$(ret_row k3-b)"
# Two replicas in one group.
of_worker_start rr2 return-requested "${WENV[@]}"
for ((i = 0; i < 600; i++)); do
    a=$(held rr1)
    b=$(held rr2)
    [ -n "$a" ] && [ -n "$b" ] && [ "$(echo "$a $b" | wc -w)" -eq 6 ] && break
    sleep 0.1
done
echo "# rr1 holds partitions [$a], rr2 [$b]"
check "the two return-requested replicas share the 6 partitions" "yes 6" \
    "$([ -n "$a" ] && [ -n "$b" ] && echo yes || echo no) $(echo "$a $b" | wc -w)"
mark2=$(wc -l <"$OF_WORK/rr2.log")
for k in k4 k5; do
    request "$k-a" "$k" null 'r-k:2'
    request "$k-b" "$k" null 'r-k:2'
done
# k6, k7: against the contract's keying, the two requests on partitions of
# different replicas, sent at the same time: only the order lock can keep
# them from both taking the same units.
pa=${a%% *}
pb=${b%% *}
for k in k6 k7; do
    request "$k-a" "$k" null 'r-k:2' -p "$pa" &
    p1=$!
    request "$k-b" "$k" null 'r-k:2' -p "$pb" &
    p2=$!
    wait "$p1" "$p2"
done
settle 'k%' 14 120
K="name like 'k%'"
check "every contended order: exactly one return accepted, one REJECTED QUANTITY_EXCEEDED" 7 \
    "$(sql "select count(*) from (select split_part(name, '-', 1) o,
                   count(*) filter (where status = 'REFUND_COMPLETED' and version = 5 and refund_cents = 4000) ok,
                   count(*) filter (where status = 'REJECTED' and status_reason = 'QUANTITY_EXCEEDED' and version = 1) nok
            from rq where $K group by 1) x where ok = 1 and nok = 1")"
check "rejections say requested 2, returnable 1; their executions FAILED with that error" 7 \
    "$(sql "select count(*) from rq r join executions e on e.return_id = r.id join execution_history h
            on h.execution_id = e.id where r.$K and r.status = 'REJECTED' and e.status = 'FAILED'
            and e.error = 'QUANTITY_EXCEEDED'
            and h.detail @> '{\"reason\": \"QUANTITY_EXCEEDED\", \"product_id\": \"r-k\", \"requested\": 2,
                              \"returnable\": 1}'")"
check "contended product: stock back by 2 per order (the accepted return only)" \
    "$(sql "select stock + 14 from stock0 where id = 'r-k'")" "$(sql "select stock from products where id = 'r-k'")"
check "contended orders: one refund each, none for the rejected" "7 7 28000" \
    "$(sql "select count(*) || ' ' || count(distinct f.order_id) || ' ' || sum(f.amount_cents) from refunds f
            join rq r on r.id = f.return_id where r.$K")"
check "contended orders: PARTIALLY_RETURNED (2 of 3 back)" 7 \
    "$(sql "select count(*) from orders where id in (select order_id from rq where $K)
            and status = 'PARTIALLY_RETURNED' and version = 7")"
n2=$(tail -n +"$((mark2 + 1))" "$OF_WORK/rr2.log" | jq -R -r 'fromjson? | select(.msg | startswith("event ")) | .msg' | wc -l)
echo "# rr2 handled $n2 events"
check "the second replica handled events" yes "$([ "$n2" -gt 0 ] && echo yes || echo no)"

# --- 4. Rejections -----------------------------------------------------------------------------
sql "create table stock4 as select id, stock from products where id <> 'r-k'"
request nd nd false 'r-a:1'
request win win false 'r-a:1'
request win29 win29 true 'r-b:1'
request unk unk false 'r-a:1 r-x:1'
settle 'nd' 1 120
settle 'win%' 2 120
settle 'unk' 1 120
of_kafka_load return.requested >/dev/null
check "undelivered (CONFIRMED) order: REJECTED ORDER_NOT_DELIVERED" "REJECTED ORDER_NOT_DELIVERED 1 -" "$(ret_row nd)"
check "delivered 31 days ago: REJECTED RETURN_WINDOW_EXPIRED" "REJECTED RETURN_WINDOW_EXPIRED 1 -" "$(ret_row win)"
check "delivered 29 days ago: accepted" "REFUND_COMPLETED - 5 399" "$(ret_row win29)"
check "unknown item: REJECTED UNKNOWN_ITEM naming the product" "REJECTED UNKNOWN_ITEM 1 - r-x" \
    "$(ret_row unk) $(sql "select h.detail->>'product_id' from rq r join executions e on e.return_id = r.id
                          join execution_history h on h.execution_id = e.id where r.name = 'unk'")"
for n in nd win unk; do
    check "$n: ReturnRefund FAILED in REJECTED with the reason as its error, one history row" \
        "FAILED REJECTED true $(sql "select status_reason from rq where name = '$n'") 1:InitiateReturn:->REJECTED:applied" \
        "$(sql "select e.status || ' ' || e.current_state || ' ' || (e.stopped_at is not null) || ' ' ||
                       coalesce(e.error, '-')
                from rq r join executions e on e.return_id = r.id where r.name = '$n' and e.machine = 'ReturnRefund'") $(hist "$n")"
    check "$n: one REJECTED return.status.changed with the reason" \
        "REJECTED/-/1/$(sql "select status_reason from rq where name = '$n'")" "$(ret_events "$n")"
done
check "rejected returns: no refund, order unchanged" "0 CONFIRMED 3 DELIVERED 6 DELIVERED 6" \
    "$(sql "select count(*) from refunds f join rq r on r.id = f.return_id
            where r.name in ('nd', 'win', 'unk')") $(order_row nd) $(order_row win) $(order_row unk)"
check "rejections moved no stock (win29 brought its unit back)" \
    "$(sql "select string_agg(id || '=' || (stock + case id when 'r-b' then 1 else 0 end), ' ' order by id)
            from stock4")" "$(stock_now)"
check "window: the order delivered 29 days ago is RETURNED" "RETURNED 7" "$(order_row win29)"

# --- 5. Unknown order ---------------------------------------------------------------------------
ghost=$(cat /proc/sys/kernel/random/uuid)
ghost_body="{\"order_id\":\"$ghost\",\"items\":[{\"product_id\":\"r-a\",\"quantity\":1}]}"
of_publish return.requested "$ghost" "$OF_TAG-q-ghost" return.requested "$ghost_body"
wait_for "select count(*) = 1 from dead_letters where ce_id = '$OF_TAG-q-ghost'" 120 || true
of_kafka_wait return.requested.dlq "select count(*) >= 1 from kafka_records where topic = '$T_RR.dlq'" 60 || true
check "unknown order: one dead letter UNKNOWN_ORDER with the original bytes" \
    "1 return-requested $T_RR UNKNOWN_ORDER true true" \
    "$(sql "select count(*) || ' ' || max(worker) || ' ' || max(topic) || ' ' || max(error_code) || ' ' ||
                   bool_and(convert_from(payload, 'UTF8') = '$ghost_body') || ' ' ||
                   bool_and(convert_from(key, 'UTF8') = '$ghost')
            from dead_letters where ce_id = '$OF_TAG-q-ghost'")"
check "unknown order: one copy on return.requested.dlq with the dlq_* headers" \
    "1 UNKNOWN_ORDER $T_RR return-requested true true" \
    "$(sql "select count(*) || ' ' || max(k.headers->>'dlq_error_code') || ' ' || max(k.headers->>'dlq_topic') || ' ' ||
                   max(k.headers->>'dlq_worker') || ' ' || bool_and(k.value = '$ghost_body' and k.key = '$ghost') || ' ' ||
                   bool_and(k.headers->>'dlq_partition' = d.partition::text and k.headers->>'dlq_offset' = d.\"offset\"::text
                            and length(k.headers->>'dlq_reason') > 0)
            from kafka_records k join dead_letters d on d.ce_id = k.headers->>'ce_id'
            where k.topic = '$T_RR.dlq' and k.headers->>'ce_id' = '$OF_TAG-q-ghost'")"
check "unknown order: no return, no execution" "0 0" \
    "$(sql "select (select count(*) from returns where order_id = '$ghost') || ' ' ||
                   (select count(*) from executions where order_id = '$ghost')")"

# --- 6. The same return.requested three times ---------------------------------------------------
x=$(oid dup)
body="{\"order_id\":\"$x\",\"items\":[{\"product_id\":\"r-c\",\"quantity\":2}],\"reason\":\"test dup\"}"
sql "insert into req_items values ('dup', 'r-c', 2, true)"
stock_c=$(sql "select stock from products where id = 'r-c'")
of_publish return.requested "$x" "$OF_TAG-q-dup" return.requested "$body"
of_publish return.requested "$x" "$OF_TAG-q-dup" return.requested "$body"
settle dup 1 120
# Once more, long after; the request behind it (same key, same partition)
# shows it was consumed: it may take only the one unit left.
of_publish return.requested "$x" "$OF_TAG-q-dup" return.requested "$body"
request dup-more dup false 'r-c:2'
settle 'dup%' 2 120
of_kafka_load return.requested >/dev/null
check "the same ce_id three times: one return, REFUND_COMPLETED" "1 REFUND_COMPLETED - 5 150" \
    "$(sql "select count(*) from rq where name = 'dup'") $(ret_row dup)"
check "return-requested recorded the ce_id once; return.requested carries it three times" "1 3" \
    "$(sql "select count(*) from inbox where consumer = 'return-requested'
            and ce_id = '$OF_TAG-q-dup'") $(sql "select count(*) from requests where h->>'ce_id' = '$OF_TAG-q-dup'")"
check "the repeated request restocked once and refunded once" "$((stock_c + 2)) 1" \
    "$(sql "select stock from products where id = 'r-c'") $(sql "select count(*) from refunds f join rq r
            on r.id = f.return_id where r.name = 'dup'")"
check "the request after the copies: REJECTED QUANTITY_EXCEEDED (1 returnable)" "REJECTED QUANTITY_EXCEEDED 1 - 1" \
    "$(ret_row dup-more) $(sql "select h.detail->>'returnable' from rq r join executions e on e.return_id = r.id
                               join execution_history h on h.execution_id = e.id where r.name = 'dup-more'")"
check "order PARTIALLY_RETURNED once" "PARTIALLY_RETURNED 7" "$(order_row dup)"

# --- 7. Redelivered after its inbox row was pruned ----------------------------------------------
# A redelivery from a committed offset older than --retention-inbox: the inbox
# no longer has the ce_id, but the return (and the order) it made are on
# record (unique source_event_id), so each is a duplicate, not a dead letter.
sql "delete from inbox where ce_id in ('$OF_TAG-q-dup', '$OF_TAG-o-dup')"
of_publish return.requested "$x" "$OF_TAG-q-dup" return.requested "$body"
of_publish order.created "$OF_TAG-o-dup" "$OF_TAG-o-dup" order.created \
    '{"customer_id":"c-1","items":[{"product_id":"r-c","quantity":3}]}'
for ((i = 0; i < 300; i++)); do
    n=$(cat "$OF_WORK"/*.log 2>/dev/null | grep -c 'its effect is on record' || true)
    [ "$n" -ge 2 ] && break
    sleep 0.1
done
check "both redeliveries skipped as duplicates on record" 2 "$n"
check "still one return and one order for those ce_ids, no dead letter for them" "1 1 0" \
    "$(sql "select (select count(*) from returns where source_event_id = '$OF_TAG-q-dup') || ' ' ||
                   (select count(*) from orders where source_event_id = '$OF_TAG-o-dup') || ' ' ||
                   (select count(*) from dead_letters where ce_id in ('$OF_TAG-q-dup', '$OF_TAG-o-dup'))")"

# --- Whole run -----------------------------------------------------------------------------------
settle '%' "$(sql "select count(distinct name) from req_items")" 120
of_kafka_load return.requested >/dev/null
of_kafka_load order.status >/dev/null
check "every request made one return (names match)" 0 \
    "$(sql "select count(*) from (select distinct name from req_items) q full join rq r using (name)
            where q.name is null or r.id is null")"
check "returns that must be accepted were, those that must not were not" 0 \
    "$(sql "select count(*) from (select distinct name, ok from req_items where ok is not null) q join rq r using (name)
            where q.ok <> (r.status = 'REFUND_COMPLETED')")"
check "one refund per completed return at its refund_cents, none for the rejected" "0 0" \
    "$(sql "select count(*) filter (where (r.status = 'REFUND_COMPLETED') <> (f.id is not null)
                   or f.amount_cents is distinct from r.refund_cents and f.id is not null) || ' ' ||
                   (select count(*) - count(distinct return_id) from refunds)
            from rq r left join refunds f on f.return_id = r.id")"
check "stock of every product as the accepted returns say" "$(stock_ok) r-k=$(sql "select stock + 14 from stock0 where id = 'r-k'")" \
    "$(stock_now) $(sql "select 'r-k=' || stock from products where id = 'r-k'")"
check "only the unknown order was dead-lettered; every outbox row published" "1 0" \
    "$(sql "select (select count(*) from dead_letters) || ' ' || (select count(*) from outbox where published_at is null)")"
check "every (return, version) on Kafka has one ce_id; versions 1..n per return" "0 0" \
    "$(sql "select count(*) from (select d->>'return_id', d->>'version' from rchanged group by 1, 2
            having count(distinct h->>'ce_id') > 1) x") $(sql "select count(*) from rq r where array(select distinct
            (c.d->>'version')::int from rchanged c where c.d->>'return_id' = r.id::text order by 1)
            <> array(select generate_series(1, r.version))")"
check "one order.status.update per completed return" 0 \
    "$(sql "select count(*) from rq r where (r.status = 'REFUND_COMPLETED')::int <> (select count(distinct o.h->>'ce_id')
            from ostatus o where o.t = 'order.status.update' and o.d->>'reason' = 'return ' || r.id)")"
of_finish
