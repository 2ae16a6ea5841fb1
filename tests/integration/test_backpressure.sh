#!/usr/bin/env bash
# test_backpressure.sh: a worker over its limits stops taking batches and
# resumes once back under them (common/src/backpressure.c); nothing is lost.
#
# order-created with pause-above-txn 1s and pause-above-backlog 30:
#   1. normal: orders go through; orderflow_paused is 0;
#   2. a slow database (a statement trigger on order_items sleeps 1.5 s per
#      batch): the worker holds (orderflow_paused{reason="transaction_time"}
#      1, /readyz still 200 and says why), probes after each cool-down, holds
#      again while it stays slow, and retries nothing;
#   3. the database fast again: the next probe resumes it and every order
#      exists exactly once, no dead letter;
#   4. an outbox backlog over the limit (unpublished rows the relay may not
#      send yet): held with reason outbox_backlog, orders published meanwhile
#      wait in Kafka; the backlog gone, they are applied.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup bp
of_topics_create
sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values ('p-1', 'Bolt', 300, 100000);
     create table slow_knob (ms integer not null);
     insert into slow_knob values (0);
     create function slow_down() returns trigger language plpgsql as \$\$
       begin perform pg_sleep((select ms from slow_knob) / 1000.0); return null; end \$\$;
     create trigger slow_items after insert on order_items
       for each statement execute function slow_down()"
PORT=$((28400 + $$ % 50))
of_worker_start oc order-created ORDERFLOW_HTTP_PORT=$PORT ORDERFLOW_BATCH_SIZE=20 \
    ORDERFLOW_PAUSE_ABOVE_TXN=1s ORDERFLOW_PAUSE_ABOVE_BACKLOG=30 ORDERFLOW_OUTBOX_SWEEP_GRACE=1h

metric() { of_metric "$PORT" "$1"; }
wait_metric() { of_metric_wait "$PORT" "$@"; }
publish() { # publish FROM TO
    local i
    for ((i = $1; i <= $2; i++)); do
        of_publish order.created "$OF_TAG-o-$i" "$OF_TAG-o-$i" order.created \
            '{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":1}]}'
    done
}
orders() { sql "select count(*) || ' ' || count(distinct source_event_id) from orders"; }
TXN='orderflow_paused{reason="transaction_time"}'
BACKLOG='orderflow_paused{reason="outbox_backlog"}'

# 1. Normal.
publish 1 20
wait_for "select count(*) = 20 from orders" 60 || true
check "20 orders" "20 20" "$(orders)"
check "not paused" "0 0" "$(metric "$TXN") $(metric "$BACKLOG")"

# 2. Slow: each batch's transaction takes 1.5 s.
sql "update slow_knob set ms = 1500"
publish 21 120
wait_metric "$TXN" 1 60 || true
check "a 1.5 s transaction holds the worker: orderflow_paused{transaction_time} 1" 1 "$(metric "$TXN")"
check "counted once" 1 "$(metric 'orderflow_pauses_total{reason="transaction_time"}')"
ready=$(curl -sS --max-time 5 -w ' %{http_code}' "http://127.0.0.1:$PORT/readyz")
check_ready=no
[[ "$ready" =~ ^ready.*paused:\ a\ transaction\ took\ [0-9]+\ ms,\ above\ pause-above-txn\ 1000\ ms.*\ 200$ ]] && check_ready=yes
check "/readyz: still 200 (holding is no fault), and says why" yes "$check_ready"
for ((i = 0; i < 150; i++)); do # a probe while still slow holds it again
    grep -q 'probing with the next batch' "$OF_WORK/oc.log" &&
        [ "$(grep -c 'taking no batch for' "$OF_WORK/oc.log")" -ge 2 ] && break
    sleep 0.2
done
check "a probe after the cool-down, still slow: held again for a longer cool-down" yes \
    "$(grep -q 'taking no batch for 2000 ms' "$OF_WORK/oc.log" && echo yes || echo no)"
check "nothing retried (held, not piled up as retries)" 0 "$(metric orderflow_retries_total)"

# 3. Fast again: the next probe resumes it.
sql "update slow_knob set ms = 0"
wait_metric "$TXN" 0 90 || true
check "resumed: orderflow_paused{transaction_time} 0" 0 "$(metric "$TXN")"
wait_for "select count(*) = 120 from orders" 90 || true
check "every order once" "120 120" "$(orders)"
check "no dead letter" 0 "$(sql "select count(*) from dead_letters")"

# 4. An outbox backlog over 30: rows the relay may not send yet (grace 1 h).
sql "insert into outbox (id, topic, key, payload, headers)
     select gen_random_uuid(), '${OF_PREFIX}bp.nowhere', null, convert_to('{}', 'UTF8'), '[]'
     from generate_series(1, 40)"
wait_metric "$BACKLOG" 1 30 || true
check "40 unpublished rows hold the worker: orderflow_paused{outbox_backlog} 1" 1 "$(metric "$BACKLOG")"
publish 121 130
sleep 6
check "orders published meanwhile wait in Kafka" "120 120" "$(orders)"
sql "update outbox set published_at = now() where topic = '${OF_PREFIX}bp.nowhere'"
wait_metric "$BACKLOG" 0 30 || true
check "the backlog gone: taking batches again" 0 "$(metric "$BACKLOG")"
wait_for "select count(*) = 130 from orders" 60 || true
check "and the waiting orders applied, once each" "130 130" "$(orders)"
of_finish
