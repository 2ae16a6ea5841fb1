#!/usr/bin/env bash
# test_order_update.sh: the OrderUpdate lifecycle (order.status.update) end to end.
#
# One order-created and one order-status worker run against a scratch database
# and prefixed topics. Every section publishes binary-mode order.status.update
# events (ce_source test/payments, test/shipping, test/support) keyed by the
# order id, waits until order-status has consumed them (their inbox rows, or
# the dead letter), and checks Postgres; order.status is read back at the end:
#   1. the happy lifecycle CONFIRMED -> PAID -> SHIPPED -> DELIVERED;
#   2. every update status the contract's table does not allow from CONFIRMED,
#      PAID, SHIPPED, DELIVERED, CANCELLED and REJECTED: one rejected history
#      row each, nothing else changes, nothing is published;
#   3. expected_version: a mismatch is rejected, the matching one applies;
#   4. cancellation from CONFIRMED (stock back, no refund) and from PAID (stock
#      back, one CANCELLATION refund), cancelling twice has one effect;
#   5. the same ce_id twice (in one batch and later) has one effect; SHIPPED
#      before PAID is rejected, then PAID and a new SHIPPED apply;
#   6. an update for an order orderflow does not have is dead-lettered
#      (UNKNOWN_ORDER) on order.status.dlq.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup upd
of_topics_create
T_STATUS="${OF_PREFIX}order.status"

sql "insert into customers (id, name) values ('c-1', 'Ada'), ('c-2', 'Brian');
     insert into products (id, name, price_cents, stock) values
         ('p-1', 'Bolt', 250, 100000), ('p-2', 'Crate', 1999, 100000),
         ('q-c1', 'Cancel confirmed 1', 300, 50), ('q-c2', 'Cancel confirmed 2', 1100, 50),
         ('q-p1', 'Cancel paid 1', 700, 50), ('q-p2', 'Cancel paid 2', 4500, 50),
         ('q-d1', 'Cancel duplicate', 900, 50);
     create view changed as
         select k.partition, k.\"offset\", k.key, k.headers h, k.value::jsonb d
         from kafka_records k
         where k.topic = '$T_STATUS' and k.headers->>'ce_type' = 'order.status.changed';
     -- One line per status event: status/previous/version[/reason].
     create view changed_sig as
         select c.*, (c.d->>'status') || '/' || coalesce(c.d->>'previous_status', '-') || '/' ||
                (c.d->>'version') || coalesce('/' || (c.d->>'reason'), '') sig
         from changed c;
     create table expected_rejected (ce_id text primary key, order_id uuid not null, step text not null,
                                     from_state text not null, machine text not null)"

of_worker_start oc order-created ORDERFLOW_HTTP_PORT=0
of_worker_start os order-status ORDERFLOW_HTTP_PORT=0

# --- helpers ---------------------------------------------------------------------------

# order.status.update as another service sends it; of_publish fixes ce_source
# to test/<name>, these name the sending service.
upd() { # upd <order id> <ce_id suffix> <source> <status> [extra JSON members]
    printf '{"order_id":"%s","status":"%s"%s}\n' "$1" "$4" "${5:+,$5}" |
        kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$T_STATUS" -k "$1" \
            -H ce_specversion=1.0 -H "ce_id=$OF_TAG-$2" -H ce_type=order.status.update \
            -H "ce_source=test/$3" -H "ce_time=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" \
            -H content-type=application/json
}
# The test stack's PostgreSQL must stay up; if it goes away (another run's
# fixture restarting the shared test stack), stop at once instead of waiting
# out every timeout.
db_alive() {
    sql "select 1" >/dev/null 2>&1 && return 0
    echo "# PostgreSQL of the test stack ($PGPORT) is unreachable: giving up"
    exit 1
}
# Waits until order-status has consumed (committed) every ce_id suffix given.
consumed() { # consumed <ce_id suffix>...
    local list="" s
    db_alive
    for s in "$@"; do list+="${list:+,}'$OF_TAG-$s'"; done
    wait_for "select count(*) = $# from inbox where consumer = 'order-status' and ce_id in ($list)" 120 || true
}
oid() { sql "select id from orders where correlation_id = '$OF_TAG-$1'"; }
row() { # row <order id>: status version reason
    sql "select status || ' ' || version || ' ' || coalesce(status_reason, '-') from orders where id = '$1'"
}
# The OrderUpdate history: step:from>to:outcome:ce_id suffix (Start has no suffix).
update_history() { # update_history <order id>
    sql "select string_agg(h.step || ':' || coalesce(h.from_state, '-') || '>' || coalesce(h.to_state, '-') ||
                ':' || h.outcome || case when h.step = 'Start' then '' else ':' ||
                replace(h.event_id, '$OF_TAG-', '') end, ',' order by h.seq)
         from execution_history h join executions e on e.id = h.execution_id
         where e.order_id = '$1' and e.machine = 'OrderUpdate'"
}
execution() { # execution <order id> <machine>: status state stopped error
    sql "select status || ' ' || current_state || ' ' || (stopped_at is not null) || ' ' || coalesce(error, '-')
         from executions where order_id = '$1' and machine = '$2'"
}
deadline() { # deadline <order id>: cancelled fired
    sql "select (cancelled_at is not null) || ' ' || (fired_at is not null) from deadlines
         where order_id = '$1' and kind = 'PAYMENT'"
}
# "duplicate event skipped" lines for a ce_id in order-status's log; waits a
# little for the expected count (the line follows the commit).
skipped() { # skipped <ce_id suffix> <expected count>
    local i n=0
    for ((i = 0; i < 100; i++)); do
        n=$(jq -R -r --arg id "$OF_TAG-$1" \
            'fromjson? | select(.ce_id == $id and .msg == "duplicate event skipped") | .msg' \
            "$OF_WORK/os.log" | wc -l)
        [ "$n" -ge "$2" ] && break
        sleep 0.1
    done
    echo "$n"
}
stock() { # stock <product>...: id=stock ...
    local list="" p
    for p in "$@"; do list+="${list:+,}'$p'"; done
    sql "select string_agg(id || '=' || stock, ' ' order by id) from products where id in ($list)"
}

# --- orders ------------------------------------------------------------------------------
# name|customer|items
orders='happy|c-1|{"product_id":"p-1","quantity":2},{"product_id":"p-2","quantity":1}
ill-CONFIRMED|c-2|{"product_id":"p-1","quantity":1}
ill-PAID|c-2|{"product_id":"p-1","quantity":1}
ill-SHIPPED|c-2|{"product_id":"p-1","quantity":1}
ill-DELIVERED|c-2|{"product_id":"p-1","quantity":1}
ill-CANCELLED|c-2|{"product_id":"p-1","quantity":1}
ill-REJECTED|c-nobody|{"product_id":"p-1","quantity":1}
ver|c-1|{"product_id":"p-2","quantity":1}
cc|c-1|{"product_id":"q-c1","quantity":3},{"product_id":"q-c2","quantity":2}
cp|c-2|{"product_id":"q-p1","quantity":4},{"product_id":"q-p2","quantity":1}
dc|c-1|{"product_id":"q-d1","quantity":5}
dup|c-1|{"product_id":"p-2","quantity":2}
ooo|c-2|{"product_id":"p-1","quantity":3}'
n_orders=0
while IFS='|' read -r name customer items; do
    of_publish order.created "$OF_TAG-$name" "$OF_TAG-$name" order.created \
        "{\"customer_id\":\"$customer\",\"items\":[$items]}"
    n_orders=$((n_orders + 1))
done <<<"$orders"
wait_for "select count(*) = $n_orders and bool_and(status in ('CONFIRMED', 'REJECTED'))
          from orders where correlation_id like '$OF_TAG-%'" 120 || true
check "$n_orders orders: all CONFIRMED at version 3 but the unknown customer's" "$((n_orders - 1)) 1" \
    "$(sql "select count(*) filter (where status = 'CONFIRMED' and version = 3) || ' ' ||
                   count(*) filter (where status = 'REJECTED' and status_reason = 'UNKNOWN_CUSTOMER')
            from orders")"
check "confirmed orders have a RUNNING OrderUpdate and a pending payment deadline" "$((n_orders - 1))" \
    "$(sql "select count(*) from orders o join executions e on e.order_id = o.id and e.machine = 'OrderUpdate'
            join deadlines d on d.order_id = o.id and d.kind = 'PAYMENT'
            where e.status = 'RUNNING' and d.fired_at is null and d.cancelled_at is null")"

# --- 1. Happy lifecycle ----------------------------------------------------------------------
H=$(oid happy)
happy_stock=$(stock p-1 p-2)
upd "$H" h-paid payments PAID '"reason":"card 4242"'
upd "$H" h-shipped shipping SHIPPED '"expected_version":4'
upd "$H" h-delivered shipping DELIVERED
consumed h-paid h-shipped h-delivered
check "happy: DELIVERED at version 6, no status reason (only CANCELLED keeps one)" "DELIVERED 6 -" "$(row "$H")"
check "happy: delivered_at set" t "$(sql "select delivered_at is not null from orders where id = '$H'")"
check "happy: OrderUpdate SUCCEEDED in DELIVERED, stopped" "SUCCEEDED DELIVERED true -" \
    "$(execution "$H" OrderUpdate)"
check "happy: OrderUpdate history Start, RecordPayment, RecordShipment, RecordDelivery" \
    "Start:INVENTORY_RESERVED>CONFIRMED:applied,RecordPayment:CONFIRMED>PAID:applied:h-paid,RecordShipment:PAID>SHIPPED:applied:h-shipped,RecordDelivery:SHIPPED>DELIVERED:applied:h-delivered" \
    "$(update_history "$H")"
check "happy: payment deadline cancelled, never fired" "true false" "$(deadline "$H")"
check "happy: stock stays taken, no refund" "$happy_stock 0" \
    "$(stock p-1 p-2) $(sql "select count(*) from refunds where order_id = '$H'")"

# --- 2. Every illegal transition of the table ------------------------------------------------
# Contract section 4: the update statuses each status allows. Everything else
# must be rejected.
UPDATES="PAID SHIPPED DELIVERED CANCELLED RETURNED PARTIALLY_RETURNED"
declare -A ALLOWED=(
    [CONFIRMED]="PAID CANCELLED"
    [PAID]="SHIPPED CANCELLED"
    [SHIPPED]="DELIVERED"
    [DELIVERED]="RETURNED PARTIALLY_RETURNED"
    [CANCELLED]=""
    [REJECTED]=""
)
# Bring each ill-<status> order to its status with legal updates.
declare -A ILL=()
for s in CONFIRMED PAID SHIPPED DELIVERED CANCELLED REJECTED; do ILL[$s]=$(oid "ill-$s"); done
upd "${ILL[PAID]}" i-p-1 payments PAID
upd "${ILL[SHIPPED]}" i-s-1 payments PAID
upd "${ILL[SHIPPED]}" i-s-2 shipping SHIPPED
upd "${ILL[DELIVERED]}" i-d-1 payments PAID
upd "${ILL[DELIVERED]}" i-d-2 shipping SHIPPED
upd "${ILL[DELIVERED]}" i-d-3 shipping DELIVERED
upd "${ILL[CANCELLED]}" i-c-1 support CANCELLED '"reason":"changed mind"'
consumed i-p-1 i-s-1 i-s-2 i-d-1 i-d-2 i-d-3 i-c-1
check "ill-* orders reached their statuses" \
    "CONFIRMED 3 - PAID 4 - SHIPPED 5 - DELIVERED 6 - CANCELLED 4 changed mind REJECTED 1 UNKNOWN_CUSTOMER" \
    "$(for s in CONFIRMED PAID SHIPPED DELIVERED CANCELLED REJECTED; do row "${ILL[$s]}"; done | paste -sd' ')"
before=$(for s in "${!ILL[@]}"; do
    sql "select id || ' ' || status || ' ' || version || ' ' || coalesce(status_reason, '-') || ' ' || updated_at
         from orders where id = '${ILL[$s]}'"
done | sort)
before_stock=$(stock p-1)
ill_list=$(for s in "${!ILL[@]}"; do printf "'%s'," "${ILL[$s]}"; done | sed 's/,$//')
executions_of_ill() {
    sql "select string_agg(machine || ':' || status || ':' || current_state || ':' || coalesce(stopped_at::text, '-') ||
                ':' || coalesce(error, '-') || ':' || coalesce(output::text, '-'), ' ' order by order_id, machine)
         from executions where order_id in ($ill_list)"
}
before_executions=$(executions_of_ill)
sent=()
for s in CONFIRMED PAID SHIPPED DELIVERED CANCELLED REJECTED; do
    machine=OrderUpdate
    [ "$s" = REJECTED ] && machine=OrderProcess # never confirmed: its only execution
    for u in $UPDATES; do
        case " ${ALLOWED[$s]} " in *" $u "*) continue ;; esac
        upd "${ILL[$s]}" "x-$s-$u" shipping "$u"
        sql "insert into expected_rejected values ('$OF_TAG-x-$s-$u', '${ILL[$s]}', '$u', '$s', '$machine')"
        sent+=("x-$s-$u")
    done
done
consumed "${sent[@]}"
echo "# sent ${#sent[@]} illegal updates"
check "29 illegal (status, update) pairs derived from the contract table" 29 "${#sent[@]}"
check "each illegal update: exactly one rejected row (its ce_id, step = update, from = status, no to_state, reason), on the right execution" \
    "0 29" \
    "$(sql "with got as (select h.event_id ce_id, e.order_id, h.step, h.from_state, e.machine, h.to_state,
                                h.detail->>'reason' reason, h.detail->>'trigger' trig
                         from execution_history h join executions e on e.id = h.execution_id
                         where h.outcome = 'rejected' and e.order_id in (select order_id from expected_rejected))
            select count(*) filter (where x.ce_id is null or got.ce_id is null or got.order_id <> x.order_id
                                     or got.step <> x.step or got.from_state <> x.from_state
                                     or got.machine <> x.machine or got.to_state is not null
                                     or got.trig is distinct from x.step
                                     or got.reason is distinct from x.step || ' is not allowed from ' || x.from_state)
                   || ' ' || count(*) filter (where x.ce_id is not null and got.ce_id is not null)
            from expected_rejected x full join got using (ce_id)")"
check "illegal updates: status, version, reason and updated_at unchanged" "$before" \
    "$(for s in "${!ILL[@]}"; do
        sql "select id || ' ' || status || ' ' || version || ' ' || coalesce(status_reason, '-') || ' ' || updated_at
             from orders where id = '${ILL[$s]}'"
    done | sort)"
check "illegal updates: no stock moved (CANCELLED to CANCELLED or REJECTED releases nothing)" "$before_stock" \
    "$(stock p-1)"
check "illegal updates: executions unchanged" "$before_executions" "$(executions_of_ill)"
check "illegal updates: the executions they went to" "SUCCEEDED DELIVERED true ABORTED CANCELLED true FAILED REJECTED true" \
    "$(execution "${ILL[DELIVERED]}" OrderUpdate | cut -d' ' -f1-3) $(
        execution "${ILL[CANCELLED]}" OrderUpdate | cut -d' ' -f1-3) $(
        execution "${ILL[REJECTED]}" OrderProcess | cut -d' ' -f1-3)"
check "illegal updates: no refund for the cancelled one (it was never paid)" 0 \
    "$(sql "select count(*) from refunds where order_id in (select order_id from expected_rejected)")"

# --- 3. expected_version ------------------------------------------------------------------------
V=$(oid ver)
upd "$V" v-1 payments PAID '"expected_version":2'
upd "$V" v-2 payments PAID '"expected_version":4'
upd "$V" v-3 payments PAID '"expected_version":3'
upd "$V" v-4 shipping SHIPPED '"expected_version":3'
upd "$V" v-5 shipping SHIPPED '"expected_version":4'
consumed v-1 v-2 v-3 v-4 v-5
check "expected_version: only the matching updates applied" "SHIPPED 5 -" "$(row "$V")"
check "expected_version: mismatches recorded as rejected" \
    "Start:INVENTORY_RESERVED>CONFIRMED:applied,PAID:CONFIRMED>-:rejected:v-1,PAID:CONFIRMED>-:rejected:v-2,RecordPayment:CONFIRMED>PAID:applied:v-3,SHIPPED:PAID>-:rejected:v-4,RecordShipment:PAID>SHIPPED:applied:v-5" \
    "$(update_history "$V")"
check "expected_version: the rejections say why" \
    "expected version 2, order is at version 3|expected version 4, order is at version 3|expected version 3, order is at version 4" \
    "$(sql "select string_agg(h.detail->>'reason', '|' order by h.seq) from execution_history h
            join executions e on e.id = h.execution_id
            where e.order_id = '$V' and e.machine = 'OrderUpdate' and h.outcome = 'rejected'")"

# --- 4. Cancellation and compensation ------------------------------------------------------------
check "stock reserved by the orders to cancel" "q-c1=47 q-c2=48 q-d1=45 q-p1=46 q-p2=49" \
    "$(stock q-c1 q-c2 q-p1 q-p2 q-d1)"
# From CONFIRMED, twice in a row (one batch, most likely).
CC=$(oid cc)
upd "$CC" cc-1 support CANCELLED '"reason":"customer changed mind"'
upd "$CC" cc-2 support CANCELLED '"reason":"again"'
consumed cc-1 cc-2
check "cancel from CONFIRMED: CANCELLED at version 4 with the update's reason" \
    "CANCELLED 4 customer changed mind" "$(row "$CC")"
check "cancel from CONFIRMED: stock restored exactly, lines no longer reserved" "q-c1=50 q-c2=50 0" \
    "$(stock q-c1 q-c2) $(sql "select count(*) from order_items where order_id = '$CC' and reserved")"
check "cancel from CONFIRMED: no refund" 0 "$(sql "select count(*) from refunds where order_id = '$CC'")"
check "cancel from CONFIRMED: OrderUpdate ABORTED in CANCELLED" "ABORTED CANCELLED true -" \
    "$(execution "$CC" OrderUpdate)"
check "cancel from CONFIRMED: history CancelOrder (reason kept), then the second cancel rejected" \
    "Start:INVENTORY_RESERVED>CONFIRMED:applied,CancelOrder:CONFIRMED>CANCELLED:applied:cc-1,CANCELLED:CANCELLED>-:rejected:cc-2" \
    "$(update_history "$CC")"
check "cancel from CONFIRMED: history details" \
    "customer changed mind|CANCELLED is not allowed from CANCELLED" \
    "$(sql "select string_agg(h.detail->>'reason', '|' order by h.seq) from execution_history h
            join executions e on e.id = h.execution_id
            where e.order_id = '$CC' and e.machine = 'OrderUpdate' and h.seq > 1")"
check "cancel from CONFIRMED: payment deadline cancelled, never fired" "true false" "$(deadline "$CC")"

# From PAID; the second cancel in a later batch.
CP=$(oid cp)
upd "$CP" cp-1 payments PAID
upd "$CP" cp-2 support CANCELLED '"reason":"warehouse fire"'
consumed cp-1 cp-2
upd "$CP" cp-3 support CANCELLED '"reason":"still cancelled"'
consumed cp-3
check "cancel from PAID: CANCELLED at version 5 with the first cancel's reason" "CANCELLED 5 warehouse fire" \
    "$(row "$CP")"
check "cancel from PAID: stock restored exactly" "q-p1=50 q-p2=50 0" \
    "$(stock q-p1 q-p2) $(sql "select count(*) from order_items where order_id = '$CP' and reserved")"
check "cancel from PAID: exactly one refund, CANCELLATION, amount = total_cents (4 x 700 + 4500)" \
    "1 CANCELLATION 7300 7300 true" \
    "$(sql "select count(*) || ' ' || min(r.cause) || ' ' || min(r.amount_cents) || ' ' || min(o.total_cents) || ' ' ||
                   bool_and(r.return_id is null)
            from refunds r join orders o on o.id = r.order_id where r.order_id = '$CP'")"
check "cancel from PAID: OrderUpdate ABORTED, history RecordPayment, CancelOrder, rejected cancel" \
    "ABORTED CANCELLED true - | Start:INVENTORY_RESERVED>CONFIRMED:applied,RecordPayment:CONFIRMED>PAID:applied:cp-1,CancelOrder:PAID>CANCELLED:applied:cp-2,CANCELLED:CANCELLED>-:rejected:cp-3" \
    "$(execution "$CP" OrderUpdate) | $(update_history "$CP")"

# The same cancel (one ce_id) three times: twice at once, once later.
DC=$(oid dc)
upd "$DC" dc-1 payments PAID
consumed dc-1
upd "$DC" dc-2 support CANCELLED '"reason":"dup"'
upd "$DC" dc-2 support CANCELLED '"reason":"dup"'
consumed dc-2
upd "$DC" dc-2 support CANCELLED '"reason":"dup"'
upd "$DC" dc-3 payments PAID # behind the third copy: once it is consumed, so is the copy
consumed dc-3
check "duplicate cancel: applied once" "CANCELLED 5 dup" "$(row "$DC")"
check "duplicate cancel: stock released once, one refund of 4500" "q-d1=50 1 4500" \
    "$(stock q-d1) $(sql "select count(*) || ' ' || sum(amount_cents) from refunds where order_id = '$DC'")"
check "duplicate cancel: one history row for the ce_id, the late PAID rejected" \
    "Start:INVENTORY_RESERVED>CONFIRMED:applied,RecordPayment:CONFIRMED>PAID:applied:dc-1,CancelOrder:PAID>CANCELLED:applied:dc-2,PAID:CANCELLED>-:rejected:dc-3" \
    "$(update_history "$DC")"
check "duplicate cancel: order-status skipped the two copies" 2 "$(skipped dc-2 2)"

# --- 5. Duplicates and out of order -------------------------------------------------------------------
D=$(oid dup)
upd "$D" d-1 payments PAID
upd "$D" d-1 payments PAID
upd "$D" d-2 shipping SHIPPED
consumed d-1 d-2
upd "$D" d-1 payments PAID
upd "$D" d-3 shipping DELIVERED
consumed d-3
check "duplicate PAID: one effect, the order went on" "DELIVERED 6 -" "$(row "$D")"
check "duplicate PAID: one history row per ce_id" \
    "Start:INVENTORY_RESERVED>CONFIRMED:applied,RecordPayment:CONFIRMED>PAID:applied:d-1,RecordShipment:PAID>SHIPPED:applied:d-2,RecordDelivery:SHIPPED>DELIVERED:applied:d-3" \
    "$(update_history "$D")"
check "duplicate PAID: one inbox row, two copies skipped" "1 2" \
    "$(sql "select count(*) from inbox where consumer = 'order-status' and ce_id = '$OF_TAG-d-1'") $(skipped d-1 2)"

O=$(oid ooo)
upd "$O" o-1 shipping SHIPPED
consumed o-1
check "SHIPPED before PAID: rejected, nothing changed" "CONFIRMED 3 -" "$(row "$O")"
upd "$O" o-2 payments PAID
consumed o-2
upd "$O" o-3 shipping SHIPPED
consumed o-3
check "then PAID and a new SHIPPED apply" "SHIPPED 5 -" "$(row "$O")"
check "out of order: history" \
    "Start:INVENTORY_RESERVED>CONFIRMED:applied,SHIPPED:CONFIRMED>-:rejected:o-1,RecordPayment:CONFIRMED>PAID:applied:o-2,RecordShipment:PAID>SHIPPED:applied:o-3" \
    "$(update_history "$O")"
check "out of order: the rejection says why" "SHIPPED is not allowed from CONFIRMED" \
    "$(sql "select h.detail->>'reason' from execution_history h join executions e on e.id = h.execution_id
            where e.order_id = '$O' and h.event_id = '$OF_TAG-o-1'")"

# --- 6. Unknown order ----------------------------------------------------------------------------------
U=$(cat /proc/sys/kernel/random/uuid)
upd "$U" u-1 payments PAID
wait_for "select count(*) = 1 from dead_letters where ce_id = '$OF_TAG-u-1'" 120 || true
check "unknown order: one dead letter UNKNOWN_ORDER from order-status" "1 UNKNOWN_ORDER order-status $T_STATUS" \
    "$(sql "select count(*) || ' ' || min(error_code) || ' ' || min(worker) || ' ' || min(topic)
            from dead_letters where ce_id = '$OF_TAG-u-1'")"
of_kafka_wait order.status.dlq "select count(*) >= 1 from kafka_records where topic = '${T_STATUS}.dlq'
                                and headers->>'ce_id' = '$OF_TAG-u-1'" 60 || true
check "unknown order: order.status.dlq has the record with dlq_error_code UNKNOWN_ORDER" \
    "1 UNKNOWN_ORDER order-status $T_STATUS PAID $U" \
    "$(sql "select count(distinct k.\"offset\") || ' ' || min(k.headers->>'dlq_error_code') || ' ' ||
                   min(k.headers->>'dlq_worker') || ' ' || min(k.headers->>'dlq_topic') || ' ' ||
                   min(k.value::jsonb->>'status') || ' ' || min(k.key)
            from kafka_records k where k.topic = '${T_STATUS}.dlq' and k.headers->>'ce_id' = '$OF_TAG-u-1'")"
check "unknown order: the DLQ copy names the original position" 1 \
    "$(of_kafka_load order.status >/dev/null
       sql "select count(*) from kafka_records d join dead_letters l on l.ce_id = d.headers->>'ce_id'
            join kafka_records k on k.topic = '$T_STATUS' and k.partition = l.partition and k.\"offset\" = l.\"offset\"
            where d.topic = '${T_STATUS}.dlq' and d.headers->>'ce_id' = '$OF_TAG-u-1'
              and d.headers->>'dlq_partition' = l.partition::text and d.headers->>'dlq_offset' = l.\"offset\"::text
              and k.headers->>'ce_id' = '$OF_TAG-u-1'")"
check "unknown order: no order, no history, no inbox row" "0 0 0" \
    "$(sql "select (select count(*) from orders where id = '$U') || ' ' ||
                   (select count(*) from execution_history where event_id = '$OF_TAG-u-1') || ' ' ||
                   (select count(*) from inbox where ce_id = '$OF_TAG-u-1')")"

# --- Kafka: the status events of every order ----------------------------------------------------------
wait_for "select count(*) = count(published_at) from outbox" 120 || true
of_kafka_wait order.status \
    "select count(*) = 0 from outbox b where b.topic = '$T_STATUS' and not exists (select 1
     from kafka_records k where k.topic = b.topic and k.headers->>'ce_id' = b.id::text)" 60 || true
events() { # events <order id>: status/previous/version[/reason]@worker from version 4 on
    sql "select coalesce(string_agg(distinct c.sig || '@' || split_part(c.h->>'ce_source', '/', 2), ','), '-')
         from changed_sig c where c.d->>'order_id' = '$1' and (c.d->>'version')::int > 3"
}
check "happy: order.status.changed PAID 4, SHIPPED 5, DELIVERED 6" \
    "DELIVERED/SHIPPED/6@order-status,PAID/CONFIRMED/4@order-status,SHIPPED/PAID/5@order-status" \
    "$(events "$H")"
check "happy: the events in order, one ce_id per version, same correlation, subject and key" \
    "CREATED/-/1,INVENTORY_RESERVED/CREATED/2,CONFIRMED/INVENTORY_RESERVED/3,PAID/CONFIRMED/4,SHIPPED/PAID/5,DELIVERED/SHIPPED/6 true" \
    "$(sql "select string_agg(sig, ',' order by v) || ' ' || bool_and(ok) from (
                select (c.d->>'version')::int v, min(c.sig) sig, count(distinct c.h->>'ce_id') = 1
                       and bool_and(c.d->>'correlation_id' = '$OF_TAG-happy' and c.key = '$H'
                                    and c.h->>'ce_subject' = '$H') ok
                from changed_sig c where c.d->>'order_id' = '$H' group by 1) x")"
check "happy: history rows name the update records (ce_id, topic, partition, offset)" 3 \
    "$(sql "select count(*) from execution_history h join executions e on e.id = h.execution_id
            join kafka_records k on k.topic = h.topic and k.partition = h.partition and k.\"offset\" = h.\"offset\"
            where e.order_id = '$H' and e.machine = 'OrderUpdate' and h.step <> 'Start'
              and h.topic = '$T_STATUS' and k.headers->>'ce_id' = h.event_id
              and k.headers->>'ce_type' = 'order.status.update' and k.key = '$H'")"
check "illegal updates published nothing" \
    "CONFIRMED:- PAID:PAID/CONFIRMED/4@order-status SHIPPED:PAID/CONFIRMED/4@order-status,SHIPPED/PAID/5@order-status DELIVERED:DELIVERED/SHIPPED/6@order-status,PAID/CONFIRMED/4@order-status,SHIPPED/PAID/5@order-status CANCELLED:CANCELLED/CONFIRMED/4/changed mind@order-status REJECTED:-" \
    "$(for s in CONFIRMED PAID SHIPPED DELIVERED CANCELLED REJECTED; do
        printf '%s:%s\n' "$s" "$(events "${ILL[$s]}")"
    done | paste -sd' ')"
check "the REJECTED order has its one creation event only" "REJECTED/-/1/UNKNOWN_CUSTOMER" \
    "$(sql "select string_agg(sig, ',') from changed_sig where d->>'order_id' = '${ILL[REJECTED]}'")"
check "expected_version: events PAID 4, SHIPPED 5 only" \
    "PAID/CONFIRMED/4@order-status,SHIPPED/PAID/5@order-status" "$(events "$V")"
check "cancellations: one CANCELLED event each, with the reason" \
    "CANCELLED/CONFIRMED/4/customer changed mind@order-status|CANCELLED/PAID/5/warehouse fire@order-status,PAID/CONFIRMED/4@order-status|CANCELLED/PAID/5/dup@order-status,PAID/CONFIRMED/4@order-status" \
    "$(events "$CC")|$(events "$CP")|$(events "$DC")"
check "duplicates and out of order: one event per applied update" \
    "DELIVERED/SHIPPED/6@order-status,PAID/CONFIRMED/4@order-status,SHIPPED/PAID/5@order-status|PAID/CONFIRMED/4@order-status,SHIPPED/PAID/5@order-status" \
    "$(events "$D")|$(events "$O")"
check "every (order, version) on order.status has one ce_id" 0 \
    "$(sql "select count(*) from (select c.d->>'order_id', c.d->>'version' from changed c
            group by 1, 2 having count(distinct c.h->>'ce_id') > 1) x")"
check "every outbox row published; the only dead letter is the unknown order" "0 1" \
    "$(sql "select (select count(*) from outbox where published_at is null) || ' ' || (select count(*) from dead_letters)")"
of_finish
