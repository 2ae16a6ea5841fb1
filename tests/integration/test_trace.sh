#!/usr/bin/env bash
# test_trace.sh: trace context across the choreography (W3C Trace Context in
# the CloudEvents distributed tracing extension, docs/events.md "Trace
# context") with the three real workers.
#
# Orders go through CONFIRMED, PAID, SHIPPED, DELIVERED and a full return
# (REFUND_COMPLETED, the order RETURNED):
#   A: order.created with ce_traceparent (and ce_tracestate) from upstream;
#   B: without one: a new trace at CreateOrder;
#   C: with an invalid ce_traceparent: ignored (a new trace), not dead-lettered;
#      its PAID update carries an invalid one too (the order's trace goes on);
# the updates and return requests carry no trace context, so they go on with
# the order's trace. D is paid by an update with a trace of its own: that
# step and the next are on the update's trace. Checked:
#   - every history row of A (all executions, the return's included) is on
#     A's trace, of B one new trace, span ids unique;
#   - each row's parent span is the span of the step whose published event
#     caused it (the ce_traceparent of that outbox row), the incoming
#     parent-id for A's CreateOrder, the order's previous step for an event
#     without trace context, the step's span for the Start of OrderUpdate;
#   - the order.status.changed, return.status.changed and order.status.update
#     records on Kafka carry ce_traceparent = 00-<trace>-<their step's span>-01,
#     and A's first three its ce_tracestate;
#   - orders.traceparent is the last step's; a dead-lettered record's DLQ
#     copy keeps its ce_traceparent;
#   - orderctl history prints the trace and span of every row, --trace finds
#     the steps of one trace, describe --json has each execution's trace.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup trace
of_topics_create
T_STATUS="${OF_PREFIX}order.status"
T_RR="${OF_PREFIX}return.requested"
WENV=(ORDERFLOW_HTTP_PORT=0 ORDERFLOW_OUTBOX_SWEEP_GRACE=3s KAFKA_MESSAGE_TIMEOUT_MS=2500
    ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s)
TRACE_A=4bf92f3577b34da6a3ce929d0e0e4736
PARENT_A=00f067aa0ba902b7
STATE_A=rojo=00f067aa0ba902b7,congo=t61rcWkgMzE
TRACE_D=0af7651916cd43dd8448eb211c80319c
PARENT_D=b7ad6b7169203331
BAD=00-ZZf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01

sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values ('t-a', 'Lamp', 1200, 100);
     -- Each order's steps: the timeline with the hex ids (migration 0018).
     create view st as
         select o.source_event_id o, t.* from order_timeline t join orders o on o.id = t.order_id;"

of_worker_start oc order-created "${WENV[@]}"
of_worker_start os order-status "${WENV[@]}"
of_worker_start rr return-requested "${WENV[@]}"

oid() { sql "select id from orders where source_event_id = '$OF_TAG-$1'"; }
created() { # created NAME [kcat args...]
    local name=$1
    shift
    of_publish order.created "$OF_TAG-$name" "$OF_TAG-$name" order.created \
        '{"customer_id":"c-1","items":[{"product_id":"t-a","quantity":2}]}' "$@"
}
update() { # update NAME STATUS VERSION [kcat args...]
    local x
    x=$(oid "$1")
    of_publish order.status "$x" "$OF_TAG-$1-$2" order.status.update \
        "{\"order_id\":\"$x\",\"status\":\"$2\",\"expected_version\":$3}" "${@:4}"
}

# --- The orders, CONFIRMED ---------------------------------------------------------
created A -H "ce_traceparent=00-$TRACE_A-$PARENT_A-01" -H "ce_tracestate=$STATE_A"
created B
created C -H "ce_traceparent=$BAD" -H 'ce_tracestate=rojo=1'
created D
ALL="source_event_id in ('$OF_TAG-A', '$OF_TAG-B', '$OF_TAG-C', '$OF_TAG-D')"
wait_for "select count(*) = 4 and bool_and(status = 'CONFIRMED') from orders where $ALL" 120 || true
check "the four orders CONFIRMED, nothing dead-lettered (C's invalid traceparent is ignored)" "4 0" \
    "$(sql "select (select count(*) from orders where $ALL and status = 'CONFIRMED') || ' ' ||
                   (select count(*) from dead_letters)")"

# --- PAID, SHIPPED, DELIVERED -------------------------------------------------------
version=4
for st in PAID SHIPPED DELIVERED; do
    update A "$st" $((version - 1))
    update B "$st" $((version - 1))
    if [ "$st" = PAID ]; then
        update C "$st" $((version - 1)) -H "ce_traceparent=$BAD"
        update D "$st" $((version - 1)) -H "ce_traceparent=00-$TRACE_D-$PARENT_D-01"
    else
        update C "$st" $((version - 1))
        update D "$st" $((version - 1))
    fi
    wait_for "select count(*) = 4 from orders where $ALL and status = '$st' and version = $version" 120 || true
    version=$((version + 1))
done
check "the four orders DELIVERED" 4 "$(sql "select count(*) from orders where $ALL and status = 'DELIVERED'")"

# --- A full return of A and of B -----------------------------------------------------
for name in A B; do
    x=$(oid "$name")
    of_publish return.requested "$x" "$OF_TAG-r-$name" return.requested \
        "{\"order_id\":\"$x\",\"items\":[{\"product_id\":\"t-a\",\"quantity\":2}]}"
done
wait_for "select count(*) = 2 from orders where source_event_id in ('$OF_TAG-A', '$OF_TAG-B')
          and status = 'RETURNED'" 120 || true
check "A and B returned: REFUND_COMPLETED, the orders RETURNED" "2 2" \
    "$(sql "select (select count(*) from returns where source_event_id like '$OF_TAG-r-%'
                    and status = 'REFUND_COMPLETED') || ' ' ||
                   (select count(*) from orders where source_event_id in ('$OF_TAG-A', '$OF_TAG-B')
                    and status = 'RETURNED')")"
wait_for "select count(*) = count(published_at) from outbox" 60 || true

A=$(oid A)
B=$(oid B)
C=$(oid C)
D=$(oid D)

# --- One trace per order ----------------------------------------------------------------
check "A: every history row (OrderProcess, OrderUpdate, ReturnRefund) is on A's trace" "13 $TRACE_A" \
    "$(sql "select count(*) || ' ' || string_agg(distinct trace_id, ',') from st where o = '$OF_TAG-A'")"
check "A: 13 rows, 13 spans, every id hex" "13 true" \
    "$(sql "select count(distinct span_id) || ' ' || bool_and(span_id ~ '^[0-9a-f]{16}$'
                   and (parent_span_id is null or parent_span_id ~ '^[0-9a-f]{16}$'))
            from st where o = '$OF_TAG-A'")"
trace_b=$(sql "select string_agg(distinct trace_id, ',') from st where o = '$OF_TAG-B'")
check_match "B: every row on one new trace" '^[0-9a-f]{32}$' "$trace_b"
check "B: 13 rows, 13 spans" "13 13" \
    "$(sql "select count(*) || ' ' || count(distinct span_id) from st where o = '$OF_TAG-B'")"
check "span ids are unique across the orders" t \
    "$(sql "select count(distinct span_id) = count(*) from st where $(sed 's/source_event_id/o/' <<<"$ALL")")"

# Each row's parent, named by the step whose span it is (or the span itself
# when it is no step of the order). Steps occur once per order here.
parents() {
    sql "select string_agg(t.step || '<' || coalesce(p.step, t.parent_span_id, '-'), ' ' order by t.step)
         from st t left join st p on p.o = t.o and p.span_id = t.parent_span_id where t.o = '$OF_TAG-$1'"
}
chain="ApplyReturn<RefundCompleted %s InitiateRefund<ProcessReturn InitiateReturn<RecordDelivery"
chain+=" OrderCompleted<UpdateInventory ProcessRefund<InitiateRefund ProcessReturn<InitiateReturn"
chain+=" RecordDelivery<RecordShipment RecordPayment<OrderCompleted RecordShipment<RecordPayment"
chain+=" RefundCompleted<ProcessRefund Start<OrderCompleted UpdateInventory<CreateOrder"
# shellcheck disable=SC2059 # the format is the chain above
check "A: each step a child of the step before it, CreateOrder of upstream's span" \
    "$(printf "$chain" "CreateOrder<$PARENT_A")" "$(parents A)"
# shellcheck disable=SC2059
check "B: the same chain, CreateOrder the root" "$(printf "$chain" "CreateOrder<-")" "$(parents B)"
check "A's steps caused by orderflow's own events: the parent is the span their ce_traceparent names" \
    "7 7 7" \
    "$(sql "select count(*) || ' ' || count(*) filter (where substr(b.headers_tp, 37, 16) = t.parent_span_id)
                   || ' ' || count(*) filter (where substr(b.headers_tp, 4, 32) = t.trace_id)
            from st t join (select id::text, (select x->>'v' from jsonb_array_elements(headers) x
                                              where x->>'k' = 'ce_traceparent') headers_tp from outbox) b
              on b.id = t.event_id
            where t.o = '$OF_TAG-A' and t.step <> 'Start'")"
check "the order keeps its last step's traceparent (ApplyReturn)" t \
    "$(sql "select o.traceparent = '00-' || t.trace_id || '-' || t.span_id || '-01'
            from orders o join st t on t.order_id = o.id and t.step = 'ApplyReturn' where o.id = '$A'")"

# --- C: invalid traceparents are ignored -------------------------------------------------
trace_c=$(sql "select string_agg(distinct trace_id, ',') from st where o = '$OF_TAG-C'")
check_match "C: an invalid ce_traceparent gives a new trace, on all its rows" '^[0-9a-f]{32}$' "$trace_c"
check "C: CreateOrder is the root; the PAID with an invalid one goes on from OrderCompleted" \
    "CreateOrder<- RecordPayment<OrderCompleted" \
    "$(sql "select string_agg(t.step || '<' || coalesce(p.step, t.parent_span_id, '-'), ' ' order by t.step)
            from st t left join st p on p.o = t.o and p.span_id = t.parent_span_id
            where t.o = '$OF_TAG-C' and t.step in ('CreateOrder', 'RecordPayment')")"

# --- D: an update's own trace wins over the order's --------------------------------------
check "D: RecordPayment on the update's trace, a child of its span; RecordShipment goes on from it" \
    "RecordPayment $TRACE_D $PARENT_D|RecordShipment $TRACE_D RecordPayment" \
    "$(sql "select string_agg(t.step || ' ' || t.trace_id || ' ' || coalesce(p.step, t.parent_span_id), '|'
                              order by t.step)
            from st t left join st p on p.o = t.o and p.span_id = t.parent_span_id
            where t.o = '$OF_TAG-D' and t.step in ('RecordPayment', 'RecordShipment')")"
check "D: the steps before it are on the order's own trace" 1 \
    "$(sql "select count(distinct trace_id) from st where o = '$OF_TAG-D'
            and step in ('CreateOrder', 'UpdateInventory', 'OrderCompleted', 'Start')")"

# --- On Kafka -------------------------------------------------------------------------------
of_kafka_load order.status >/dev/null
of_kafka_load return.requested >/dev/null
sql "create view published as
         select k.key, k.headers->>'ce_type' as type, k.headers->>'ce_id' as ce_id,
                k.headers->>'ce_traceparent' as tp, k.headers->>'ce_tracestate' as ts,
                k.value::jsonb as d
         from kafka_records k
         where k.topic in ('$T_STATUS', '$T_RR') and k.headers->>'ce_source' like 'orderflow/%'" >/dev/null
# The step that published a record: for a status event, the row of its
# machine that reached the status (not the Start row); for the RETURNED
# update, RefundCompleted.
sql "create view publisher as
         select p.*, t.step, t.trace_id, t.span_id from published p
         join st t on t.order_id::text = p.key and t.step <> 'Start' and
             case p.type when 'order.status.changed' then t.machine <> 'ReturnRefund'
                                                      and t.to_state = p.d->>'status'
                         when 'return.status.changed' then t.machine = 'ReturnRefund'
                                                      and t.to_state = p.d->>'status'
                         else t.step = 'RefundCompleted' end" >/dev/null
for name in A B; do
    x=$(oid "$name")
    check "$name: every status event on Kafka carries ce_traceparent 00-<trace>-<its step's span>-01" \
        "13 13 13" \
        "$(sql "select count(distinct p.ce_id) || ' ' ||
                       (select count(distinct ce_id) from published where key = '$x') || ' ' ||
                       count(distinct p.ce_id) filter (where p.tp = '00-' || p.trace_id || '-' || p.span_id || '-01')
                from publisher p where p.key = '$x'")"
done
check "A: its creation's tracestate travels on the events of the steps it reached" \
    "CONFIRMED,CREATED,INVENTORY_RESERVED $STATE_A" \
    "$(sql "select string_agg(distinct d->>'status', ',' order by d->>'status') || ' ' || string_agg(distinct ts, ',')
            from published where key = '$A' and ts is not null")"

# --- Dead letters keep the record's headers --------------------------------------------------
of_publish order.status 00000000-0000-4000-8000-000000000000 "$OF_TAG-dlq" order.status.update \
    '{"order_id":"00000000-0000-4000-8000-000000000000","status":"PAID"}' \
    -H "ce_traceparent=00-$TRACE_D-$PARENT_D-01"
wait_for "select count(*) = 1 from dead_letters where ce_id = '$OF_TAG-dlq'" 60 || true
of_kafka_wait order.status.dlq "select count(*) >= 1 from kafka_records where topic = '${T_STATUS}.dlq'" 30 || true
check "the DLQ copy keeps the record's ce_traceparent" "UNKNOWN_ORDER 00-$TRACE_D-$PARENT_D-01" \
    "$(sql "select headers->>'dlq_error_code' || ' ' || (headers->>'ce_traceparent') from kafka_records
            where topic = '${T_STATUS}.dlq' and headers->>'ce_id' = '$OF_TAG-dlq' limit 1")"

# --- orderctl -----------------------------------------------------------------------------
ctl() { DATABASE_URL=$OF_URL "$OF_ORDERCTL" "$@"; }
out=$(ctl history "$A")
check "orderctl history: trace_id, span_id and parent_span_id columns" 1 \
    "$(head -n 1 <<<"$out" | grep -c 'trace_id  *span_id  *parent_span_id' || true)"
check "orderctl history: every row shows A's trace" 13 "$(grep -c "$TRACE_A" <<<"$out" || true)"
check "orderctl history --json: every row has its span" 13 \
    "$(ctl history "$A" --json | jq "[.[] | select(.trace_id == \"$TRACE_A\" and (.span_id | length) == 16)] | length")"
check "orderctl history --trace: the steps of A's trace, all A's" "13 $A" \
    "$(ctl history --trace "${TRACE_A^^}" --json | jq -r '"\(length) \([.[].order_id] | unique | join(","))"')"
check "orderctl history --trace: D's update trace has its last three steps" 3 \
    "$(ctl history --trace "$TRACE_D" | grep -c "$D" || true)"
rc=0
ctl history --trace 00000000000000000000000000000000 >/dev/null 2>&1 || rc=$?
check "orderctl history --trace: an all-zero id is malformed (65)" 65 "$rc"
rc=0
ctl history --trace 11111111111111111111111111111111 >/dev/null 2>&1 || rc=$?
check "orderctl history --trace: a trace without steps (66)" 66 "$rc"
check "orderctl describe --json: each execution's trace" "OrderProcess $TRACE_A,OrderUpdate $TRACE_A,ReturnRefund $TRACE_A" \
    "$(ctl describe "$A" --json | jq -r '[.executions[] | "\(.machine) \(.trace_id)"] | join(",")')"

of_finish
