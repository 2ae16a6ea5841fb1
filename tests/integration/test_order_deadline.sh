#!/usr/bin/env bash
# test_order_deadline.sh: payment deadlines (PAYMENT_TIMEOUT) on two order-status replicas.
#
# order-created and two order-status replicas (one consumer group, both with a
# 2 s payment deadline and a 200 ms scan) run against a scratch database:
#   1. an order paid while its deadline is pending is never cancelled, even
#      once its (cancelled) deadline row is past due;
#   2. six orders left unpaid are each CANCELLED (PAYMENT_TIMEOUT), OrderUpdate
#      TIMED_OUT, stock released once, one PaymentTimeout history row, the
#      deadline fired once (by one replica), one order.deadline.expired ce_id
#      each on Kafka;
#   3. a PAID update after the timeout is rejected and recorded; an
#      order.deadline.expired that reaches a PAID order is recorded as ignored;
#   4. both replicas stop, a deadline passes while they are down, one replica
#      starts again and fires it.
# Orders whose correlation id contains "-hold-" get their deadline an hour
# out (a trigger on deadlines in the scratch database), so that the test, not
# the speed of the machine, decides when they fall due.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup dl
of_topics_create
T_STATUS="${OF_PREFIX}order.status"

sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values
         ('d-1', 'Timed out', 100, 1000), ('h-1', 'Held', 250, 1000);
     create function test_hold_deadline() returns trigger language plpgsql as \$\$
     begin
         if exists (select 1 from orders o where o.id = new.order_id and o.correlation_id like '%-hold-%') then
             new.due_at := now() + interval '1 hour';
         end if;
         return new;
     end \$\$;
     create trigger test_hold_deadline before insert on deadlines
         for each row execute function test_hold_deadline();
     create view changed_sig as
         select k.headers h, k.value::jsonb d, (k.value::jsonb->>'status') || '/' ||
                coalesce(k.value::jsonb->>'previous_status', '-') || '/' || (k.value::jsonb->>'version') ||
                coalesce('/' || (k.value::jsonb->>'reason'), '') sig
         from kafka_records k
         where k.topic = '$T_STATUS' and k.headers->>'ce_type' = 'order.status.changed';
     create view expired as
         select k.key, k.headers h, k.value::jsonb d from kafka_records k
         where k.topic = '$T_STATUS' and k.headers->>'ce_type' = 'order.deadline.expired'"

env=(ORDERFLOW_PAYMENT_DEADLINE=2s ORDERFLOW_DEADLINE_SCAN_INTERVAL=200ms ORDERFLOW_HTTP_PORT=0)
of_worker_start oc order-created ORDERFLOW_HTTP_PORT=0
of_worker_start os1 order-status "${env[@]}"
of_worker_start os2 order-status "${env[@]}"
for ((i = 0; i < 600; i++)); do
    a=$(of_worker_partitions os1)
    b=$(of_worker_partitions os2)
    [ "$a" -gt 0 ] && [ "$b" -gt 0 ] && [ $((a + b)) -eq 6 ] && break
    sleep 0.1
done
check "the two order-status replicas share the 6 partitions" "yes 6" \
    "$([ "$a" -gt 0 ] && [ "$b" -gt 0 ] && echo yes || echo no) $((a + b))"

# --- helpers -------------------------------------------------------------------------------
publish_order() { # publish_order <name> <product> <quantity>
    of_publish order.created "$OF_TAG-$1" "$OF_TAG-$1" order.created \
        "{\"customer_id\":\"c-1\",\"items\":[{\"product_id\":\"$2\",\"quantity\":$3}]}"
}
upd() { # upd <order id> <ce_id suffix> <status>
    printf '{"order_id":"%s","status":"%s"}\n' "$1" "$3" |
        kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$T_STATUS" -k "$1" \
            -H ce_specversion=1.0 -H "ce_id=$OF_TAG-$2" -H ce_type=order.status.update \
            -H ce_source=test/payments -H "ce_time=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" \
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
consumed() { # consumed <ce_id suffix>
    db_alive
    wait_for "select count(*) = 1 from inbox where consumer = 'order-status' and ce_id = '$OF_TAG-$1'" 120 || true
}
oid() { sql "select id from orders where correlation_id = '$OF_TAG-$1'"; }
row() { # row <order id>: status version reason
    sql "select status || ' ' || version || ' ' || coalesce(status_reason, '-') from orders where id = '$1'"
}
update_history() { # update_history <order id>: step:from>to:outcome of OrderUpdate
    sql "select string_agg(h.step || ':' || coalesce(h.from_state, '-') || '>' || coalesce(h.to_state, '-') ||
                ':' || h.outcome, ',' order by h.seq)
         from execution_history h join executions e on e.id = h.execution_id
         where e.order_id = '$1' and e.machine = 'OrderUpdate'"
}
# Deadlines fired by the replicas, from their "N payment deadline(s) expired" log lines.
fired_logged() { # fired_logged <log>...
    cat "$@" | jq -R -r 'fromjson? | .msg | capture("^(?<n>[0-9]+) payment deadline\\(s\\) expired$")? | .n' |
        awk '{s += $1} END {print s + 0}'
}

# --- 1. Paid before the deadline --------------------------------------------------------------
publish_order hold-paid h-1 2
wait_for "select status = 'CONFIRMED' from orders where correlation_id = '$OF_TAG-hold-paid'" 120 || true
P=$(oid hold-paid)
upd "$P" paid-1 PAID
consumed paid-1
check "paid in time: PAID at version 4" "PAID 4 -" "$(row "$P")"
check "paid in time: the deadline is cancelled, not fired" "true false" \
    "$(sql "select (cancelled_at is not null) || ' ' || (fired_at is not null) from deadlines where order_id = '$P'")"
# Its row is now past due: the scans of phase 2, which fire later deadlines,
# must still leave it alone.
sql "update deadlines set due_at = now() - interval '1 minute' where order_id = '$P'"

# --- 2. Unpaid orders time out --------------------------------------------------------------------
for i in 1 2 3 4 5 6; do publish_order "t-$i" d-1 "$i"; done
T="o.correlation_id like '$OF_TAG-t-%'"
db_alive
wait_for "select count(*) = 6 and bool_and(status = 'CANCELLED') from orders o where $T" 120 || true
check "unpaid: six orders CANCELLED at version 4, reason PAYMENT_TIMEOUT" 6 \
    "$(sql "select count(*) from orders o where $T and status = 'CANCELLED' and version = 4
            and status_reason = 'PAYMENT_TIMEOUT' and confirmed_at is not null")"
check "unpaid: OrderUpdate TIMED_OUT in CANCELLED, stopped" 6 \
    "$(sql "select count(*) from orders o join executions e on e.order_id = o.id and e.machine = 'OrderUpdate'
            where $T and e.status = 'TIMED_OUT' and e.current_state = 'CANCELLED' and e.stopped_at is not null")"
check "unpaid: history Start, PaymentTimeout (reason PAYMENT_TIMEOUT, event = the deadline's event id)" 6 \
    "$(sql "select count(*) from (select o.id, string_agg(h.step || ':' || coalesce(h.from_state, '-') || '>' ||
                   coalesce(h.to_state, '-') || ':' || h.outcome || ':' ||
                   (h.step <> 'PaymentTimeout' or (h.event_id = d.event_id::text
                    and h.detail->>'reason' = 'PAYMENT_TIMEOUT' and h.topic = '$T_STATUS'))::text,
                   ',' order by h.seq) sig
            from orders o join executions e on e.order_id = o.id and e.machine = 'OrderUpdate'
            join execution_history h on h.execution_id = e.id
            join deadlines d on d.order_id = o.id and d.kind = 'PAYMENT'
            where $T group by o.id) x
            where sig = 'Start:INVENTORY_RESERVED>CONFIRMED:applied:true,PaymentTimeout:CONFIRMED>CANCELLED:applied:true'")"
check "unpaid: stock released exactly once (d-1 back to 1000), no line reserved, no refund" "d-1=1000 0 0" \
    "$(sql "select 'd-1=' || stock from products where id = 'd-1'") $(
        sql "select count(*) from order_items i join orders o on o.id = i.order_id where $T and i.reserved") $(
        sql "select count(*) from refunds r join orders o on o.id = r.order_id where $T")"
check "unpaid: one deadline row each, fired (at or after due_at), not cancelled" 6 \
    "$(sql "select count(*) from deadlines d join orders o on o.id = d.order_id
            where $T and d.fired_at >= d.due_at and d.cancelled_at is null")"
n1=$(fired_logged "$OF_WORK/os1.log")
n2=$(fired_logged "$OF_WORK/os2.log")
echo "# deadlines fired: os1 $n1, os2 $n2"
check "the replicas fired six deadlines between them (none twice)" 6 "$((n1 + n2))"
check "paid in time: still PAID, deadline never fired, no PaymentTimeout" "PAID 4 - f RUNNING" \
    "$(row "$P") $(sql "select fired_at is not null from deadlines where order_id = '$P'") $(
        sql "select status from executions where order_id = '$P' and machine = 'OrderUpdate'")"

# --- 3. Too late, and a deadline event that finds the order paid ---------------------------------------
L=$(oid t-1)
upd "$L" late-1 PAID
consumed late-1
check "PAID after the timeout: rejected, the order stays CANCELLED" "CANCELLED 4 PAYMENT_TIMEOUT" "$(row "$L")"
check "PAID after the timeout: recorded in the TIMED_OUT OrderUpdate" \
    "TIMED_OUT Start:INVENTORY_RESERVED>CONFIRMED:applied,PaymentTimeout:CONFIRMED>CANCELLED:applied,PAID:CANCELLED>-:rejected PAID is not allowed from CANCELLED" \
    "$(sql "select status from executions where order_id = '$L' and machine = 'OrderUpdate'") $(update_history "$L") $(
        sql "select h.detail->>'reason' from execution_history h where h.event_id = '$OF_TAG-late-1'")"
# As if the timer had fired just before the payment was applied.
of_publish order.status "$P" "$OF_TAG-fake-dl" order.deadline.expired \
    "{\"order_id\":\"$P\",\"kind\":\"PAYMENT\",\"due_at\":\"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)\"}"
consumed fake-dl
check "a deadline event for a PAID order: recorded as ignored, nothing changes" \
    "PAID 4 - Start:INVENTORY_RESERVED>CONFIRMED:applied,RecordPayment:CONFIRMED>PAID:applied,PAYMENT_TIMEOUT:PAID>-:ignored payment deadline passed while the order was PAID" \
    "$(row "$P") $(update_history "$P") $(sql "select h.detail->>'reason' from execution_history h where h.event_id = '$OF_TAG-fake-dl'")"

# --- 4. A deadline passes while no replica runs ---------------------------------------------------------
publish_order hold-restart h-1 3
wait_for "select status = 'CONFIRMED' from orders where correlation_id = '$OF_TAG-hold-restart'" 120 || true
R=$(oid hold-restart)
check "restart: the order holds 5 units of h-1 with the paid one" "h-1=995" \
    "$(sql "select 'h-1=' || stock from products where id = 'h-1'")"
of_worker_stop os1
of_worker_stop os2
sql "update deadlines set due_at = now() + interval '1 second' where order_id = '$R'"
wait_for "select due_at < now() from deadlines where order_id = '$R'" 30 || true
sleep 1 # past due for a while, with nobody to fire it
check "restart: past due while both replicas are down, not fired, order still CONFIRMED" "true false CONFIRMED" \
    "$(sql "select (due_at < now()) || ' ' || (fired_at is not null) from deadlines where order_id = '$R'") $(
        sql "select status from orders where id = '$R'")"
of_worker_start os1 order-status "${env[@]}"
db_alive
wait_for "select status = 'CANCELLED' from orders where id = '$R'" 120 || true
check "restart: the started replica fired it" "CANCELLED 4 PAYMENT_TIMEOUT TIMED_OUT" \
    "$(row "$R") $(sql "select status from executions where order_id = '$R' and machine = 'OrderUpdate'")"
check "restart: one PaymentTimeout, deadline fired once, stock back" "1 t h-1=998" \
    "$(sql "select count(*) from execution_history h join executions e on e.id = h.execution_id
            where e.order_id = '$R' and h.step = 'PaymentTimeout'") $(
        sql "select fired_at is not null from deadlines where order_id = '$R'") $(
        sql "select 'h-1=' || stock from products where id = 'h-1'")"

# --- Kafka --------------------------------------------------------------------------------------------------
wait_for "select count(*) = count(published_at) from outbox" 120 || true
D="o.correlation_id like '$OF_TAG-t-%' or o.id = '$R'"
of_kafka_wait order.status \
    "select count(*) = 7 from orders o where ($D) and exists (select 1 from changed_sig c
     where c.d->>'order_id' = o.id::text and c.d->>'status' = 'CANCELLED')" 60 || true
check "order.deadline.expired: one distinct ce_id per fired deadline (= deadlines.event_id, due_at), from order-status" \
    "7 7" \
    "$(sql "select count(*) || ' ' || count(*) filter (where n = 1 and ok) from (
                select o.id, count(distinct x.h->>'ce_id') n,
                       bool_and(x.h->>'ce_id' = d.event_id::text and x.key = o.id::text
                                and x.h->>'ce_subject' = o.id::text and x.d->>'kind' = 'PAYMENT'
                                and x.d->>'due_at' = to_char(d.due_at at time zone 'UTC',
                                                             'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
                                and x.h->>'ce_source' = 'orderflow/order-status') ok
                from orders o join deadlines d on d.order_id = o.id
                join expired x on x.d->>'order_id' = o.id::text where $D group by o.id) y")"
check "order.deadline.expired: none for the paid order but the hand-made one" "$OF_TAG-fake-dl" \
    "$(sql "select string_agg(distinct h->>'ce_id', ',') from expired where d->>'order_id' = '$P'")"
check "order.status.changed: CANCELLED/CONFIRMED/4/PAYMENT_TIMEOUT once per timed-out order (its correlation id), nothing after" 7 \
    "$(sql "select count(*) from (select o.id, string_agg(distinct c.sig, ',') s, count(distinct c.h->>'ce_id') n,
                   bool_and(c.d->>'correlation_id' = o.correlation_id) corr
            from orders o join changed_sig c on c.d->>'order_id' = o.id::text
            where ($D) and (c.d->>'version')::int > 3 group by o.id) x
            where n = 1 and corr and s = 'CANCELLED/CONFIRMED/4/PAYMENT_TIMEOUT'")"
check "every deadline fired once in all (logs of both replicas, across the restart)" 7 \
    "$(fired_logged "$OF_WORK/os1.log" "$OF_WORK/os2.log")"
check "no dead letters, every outbox row published" "0 0" \
    "$(sql "select (select count(*) from dead_letters) || ' ' || (select count(*) from outbox where published_at is null)")"
of_finish
