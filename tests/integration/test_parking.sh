#!/usr/bin/env bash
# test_parking.sh: per-key parking instead of partition blocking (common/src/park.c).
#
# order-created and order-status run with parking on (ORDERFLOW_PARK_MAX_AGE=10m;
# the suite turns it off elsewhere) against topics of ONE partition each, so
# every order below shares its partition with every other:
#   1. an order naming a product not published yet is parked (UNKNOWN_PRODUCT)
#      while 30 orders behind it on the same partition are all CONFIRMED; it is
#      listed (orderctl parked list, the orderflow_parked_keys gauge) and is
#      created and CONFIRMED by itself once the product appears;
#   2. a version gap: order.status.update PAID expecting version 3 and SHIPPED
#      behind it arrive while the order is still being confirmed; PAID parks
#      (VERSION_GAP), SHIPPED is held behind it, the order's own status events
#      go on (never held) and fill the gap; PAID then SHIPPED apply in order;
#   3. orderctl parked release: a key whose next replay is an hour away is
#      replayed at once after release; release --final makes a key whose
#      product never comes REJECTED (UNKNOWN_PRODUCT); releasing a key that is
#      not parked exits 66;
#   4. park-max-age: a key parked longer than that takes its outcome (REJECTED);
#   5. SIGKILL of order-created while a key is parked: after the restart the
#      parked event is there once (a redelivery does not park it twice), the
#      orders behind it are processed, and it is created once its product appears;
#   6. two order-created replicas replay 8 parked keys at once: each order is
#      created once, parking ends empty;
#   7. a gap no automatic step will close (PAID expecting version 9 of a
#      CONFIRMED order) is rejected at once, not parked.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup park
"$OF_ORDERCTL" topics create --kafka-bootstrap-servers "$KAFKA_BOOTSTRAP_SERVERS" \
    --topic-prefix "$OF_PREFIX" --partitions 1 >/dev/null

sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values ('p-1', 'Bolt', 250, 100000)"

PORT_OC=$((ORDERFLOW_KAFKA_PORT + 411))
PENV=(ORDERFLOW_PARK_MAX_AGE=10m ORDERFLOW_PARK_RETRY_MAX=2s ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s)
of_worker_start oc order-created "${PENV[@]}" ORDERFLOW_HTTP_PORT=$PORT_OC
of_worker_start os order-status "${PENV[@]}" ORDERFLOW_HTTP_PORT=0

order() { # order <ce_id suffix> <product>
    of_publish order.created "$OF_TAG-$1" "$OF_TAG-$1" order.created \
        "{\"customer_id\":\"c-1\",\"items\":[{\"product_id\":\"$2\",\"quantity\":1}]}"
}
status_of() { sql "select coalesce((select status || ' ' || version from orders where correlation_id = '$OF_TAG-$1'), 'none')"; }
parked() { # parked <key>: error_code/events of the key, or "none"
    sql "select coalesce((select k.error_code || '/' || (select count(*) from parked_events e
                 where e.consumer = k.consumer and e.key = k.key)
             from parked_keys k where k.key = convert_to('$1', 'UTF8')), 'none')"
}

# --- 1. a parked order does not delay the orders behind it --------------------------------
order late p-late
for i in $(seq 1 30); do order "b$i" p-1; done
wait_for "select count(*) = 30 from orders where correlation_id like '$OF_TAG-b%' and status = 'CONFIRMED'" 120 || true
check "30 orders behind the parked one on its partition are CONFIRMED" 30 \
    "$(sql "select count(*) from orders where correlation_id like '$OF_TAG-b%' and status = 'CONFIRMED'")"
check "the order naming a missing product is parked (UNKNOWN_PRODUCT, 1 event), not rejected" \
    "UNKNOWN_PRODUCT/1 none" "$(parked "$OF_TAG-late") $(status_of late)"
check_match "orderctl parked list shows it" "order-created +[^ ]*order\.created +$OF_TAG-late +UNKNOWN_PRODUCT" \
    "$("$OF_ORDERCTL" parked list --database-url "$OF_URL")"
check "the orderflow_parked_keys gauge counts it" ok \
    "$(of_metric_wait "$PORT_OC" orderflow_parked_keys 1 15 >/dev/null && echo ok)"
check_match "the oldest-parked gauge is its age" '^[0-9.]+$' \
    "$(of_metric "$PORT_OC" orderflow_parked_oldest_age_seconds)"
sql "insert into products (id, name, price_cents, stock) values ('p-late', 'Late', 900, 10)"
wait_for "select status = 'CONFIRMED' from orders where correlation_id = '$OF_TAG-late'" 60 || true
check "once the product appears, the parked order is created and CONFIRMED by itself" "CONFIRMED 3" \
    "$(status_of late)"
check "its key and event are gone from parking" none "$(parked "$OF_TAG-late")"
check "its history starts with CreateOrder, once" 1 \
    "$(sql "select count(*) from execution_history h join executions x on x.id = h.execution_id
            join orders o on o.id = x.order_id
            where o.correlation_id = '$OF_TAG-late' and h.to_state = 'CREATED'")"

# --- 2. a version gap waits for the order's own steps; later events held, then in order ---
of_worker_stop os
order gap p-1
wait_for "select count(*) = 1 from orders where correlation_id = '$OF_TAG-gap'" 60 || true
G=$(sql "select id from orders where correlation_id = '$OF_TAG-gap'")
check "with order-status stopped the order waits at CREATED" "CREATED 1" "$(status_of gap)"
of_publish order.status "$G" "$OF_TAG-g-pay" order.status.update \
    "{\"order_id\":\"$G\",\"status\":\"PAID\",\"expected_version\":3}"
of_publish order.status "$G" "$OF_TAG-g-ship" order.status.update \
    "{\"order_id\":\"$G\",\"status\":\"SHIPPED\"}"
of_worker_start os order-status "${PENV[@]}" ORDERFLOW_HTTP_PORT=0
wait_for "select status = 'SHIPPED' from orders where id = '$G'" 60 || true
check "PAID (expecting version 3) and SHIPPED both applied, in order" "SHIPPED 5" "$(status_of gap)"
check "the order's history: reserved, confirmed (OrderUpdate starts there), then PAID, then SHIPPED" \
    "INVENTORY_RESERVED,CONFIRMED,CONFIRMED,PAID,SHIPPED" \
    "$(sql "select string_agg(h.to_state, ',' order by h.at, h.seq) from execution_history h
            join executions x on x.id = h.execution_id where x.order_id = '$G'
            and h.outcome = 'applied' and h.to_state is not null and h.to_state <> 'CREATED'")"
check "PAID was parked on the version gap and SHIPPED held behind it" "1 1" \
    "$(grep -c '"msg":"event parked: VERSION_GAP' "$OF_WORK/os.log") $(grep -c '"msg":"event parked: PARKED_BEHIND' "$OF_WORK/os.log")"
check "nothing of the order is parked any more" none "$(parked "$G")"

# --- 3. orderctl parked release, and release --final ----------------------------------------
order rel p-rel
order fin p-never
wait_for "select count(*) = 2 from parked_keys where head_ce_id in ('$OF_TAG-rel', '$OF_TAG-fin')" 60 || true
# The next replay an hour away: only a release brings it sooner.
sql "update parked_keys set next_try_at = now() + interval '1 hour'
     where head_ce_id in ('$OF_TAG-rel', '$OF_TAG-fin')"
sql "insert into products (id, name, price_cents, stock) values ('p-rel', 'Released', 100, 10)"
sleep 3
check "with its product there but no replay due, the order still waits" "none UNKNOWN_PRODUCT/1" \
    "$(status_of rel) $(parked "$OF_TAG-rel")"
show=$("$OF_ORDERCTL" parked show "$OF_TAG-rel" --database-url "$OF_URL")
check_match "orderctl parked show lists its event" "$OF_TAG-rel +order\.created" "$show"
check_match "orderctl parked release releases it" "order-created $OF_TAG-rel: released" \
    "$("$OF_ORDERCTL" parked release "$OF_TAG-rel" --database-url "$OF_URL")"
wait_for "select status = 'CONFIRMED' from orders where correlation_id = '$OF_TAG-rel'" 30 || true
check "the released order is created and CONFIRMED" "CONFIRMED 3" "$(status_of rel)"
rc=0
"$OF_ORDERCTL" parked release "$OF_TAG-nothing" --database-url "$OF_URL" >/dev/null 2>&1 || rc=$?
check "releasing a key that is not parked exits 66" 66 "$rc"
"$OF_ORDERCTL" parked release --final "$OF_TAG-fin" --database-url "$OF_URL" >/dev/null
wait_for "select count(*) = 1 from orders where correlation_id = '$OF_TAG-fin'" 30 || true
check "release --final: the order takes its outcome, REJECTED for the unknown product" \
    "REJECTED 1 UNKNOWN_PRODUCT" \
    "$(sql "select status || ' ' || version || ' ' || status_reason from orders where correlation_id = '$OF_TAG-fin'")"
check "and nothing of it is parked any more" none "$(parked "$OF_TAG-fin")"

# --- 4. park-max-age -------------------------------------------------------------------------
order old p-never
wait_for "select count(*) = 1 from parked_keys where head_ce_id = '$OF_TAG-old'" 60 || true
sql "update parked_keys set parked_at = now() - interval '11 minutes' where head_ce_id = '$OF_TAG-old'"
wait_for "select count(*) = 1 from orders where correlation_id = '$OF_TAG-old'" 30 || true
check "a key parked longer than park-max-age takes its outcome (REJECTED)" "REJECTED 1" "$(status_of old)"
check "and leaves parking" none "$(parked "$OF_TAG-old")"

# --- 5. SIGKILL while parked ---------------------------------------------------------------
order kill p-kill
wait_for "select count(*) = 1 from parked_events where ce_id = '$OF_TAG-kill'" 60 || true
of_worker_kill oc
# The same record again, as a redelivery after a crash before the offset commit would bring it.
order kill p-kill
order after p-1
of_worker_start oc order-created "${PENV[@]}" ORDERFLOW_HTTP_PORT=$PORT_OC
wait_for "select status = 'CONFIRMED' from orders where correlation_id = '$OF_TAG-after'" 60 || true
check "after the restart the order behind the parked one is CONFIRMED" "CONFIRMED 3" "$(status_of after)"
check "the parked event is there once, the order not created" "UNKNOWN_PRODUCT/1 none" \
    "$(parked "$OF_TAG-kill") $(status_of kill)"
sql "insert into products (id, name, price_cents, stock) values ('p-kill', 'Killed', 100, 10)"
wait_for "select status = 'CONFIRMED' from orders where correlation_id = '$OF_TAG-kill'" 60 || true
check "once its product appears it is created once and CONFIRMED" "1 CONFIRMED 3" \
    "$(sql "select count(*) from orders where correlation_id = '$OF_TAG-kill'") $(status_of kill)"

# --- 6. two replicas replay at once ------------------------------------------------------
of_worker_start oc2 order-created "${PENV[@]}" ORDERFLOW_HTTP_PORT=0
for i in $(seq 1 8); do order "m$i" p-multi; done
wait_for "select count(*) = 8 from parked_events where ce_id like '$OF_TAG-m%'" 60 || true
check "8 orders wait for their product" 8 \
    "$(sql "select count(*) from parked_keys where head_ce_id like '$OF_TAG-m%'")"
sql "insert into products (id, name, price_cents, stock) values ('p-multi', 'Multi', 100, 100)"
wait_for "select count(*) = 8 from orders where correlation_id like '$OF_TAG-m%' and status = 'CONFIRMED'" 60 || true
check "with two replicas replaying, each is created once and CONFIRMED" "8 8" \
    "$(sql "select count(*) || ' ' || count(distinct correlation_id) from orders where correlation_id like '$OF_TAG-m%' and status = 'CONFIRMED'")"
check "parking is empty" "0 0" \
    "$(sql "select (select count(*) from parked_keys) || ' ' || (select count(*) from parked_events)")"

# --- 7. a gap nothing will close is rejected at once ----------------------------------------
X=$(sql "select id from orders where correlation_id = '$OF_TAG-b1'")
of_publish order.status "$X" "$OF_TAG-x-pay" order.status.update \
    "{\"order_id\":\"$X\",\"status\":\"PAID\",\"expected_version\":9}"
wait_for "select count(*) = 1 from inbox where ce_id = '$OF_TAG-x-pay'" 30 || true
check "PAID expecting version 9 of a CONFIRMED order (version 3) is rejected, not parked" "rejected none" \
    "$(sql "select outcome from execution_history where event_id = '$OF_TAG-x-pay'") $(parked "$X")"

of_worker_stop oc2

of_worker_stop oc
of_worker_stop os
of_finish
