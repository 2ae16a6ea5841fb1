#!/usr/bin/env bash
# test_fatal.sh: a fatal producer error stops the worker instead of leaving it
# ready and committing with a producer that can publish nothing.
#
# The failpoint producer-fatal (compiled in with -DORDERFLOW_FAILPOINTS=ON, as
# ops/test builds) raises librdkafka's fatal idempotent-producer error after
# the second delivery report. The worker must stop taking batches and exit 70
# on its own; restarted without the failpoint, it finishes the work: every
# order once, every outbox row published (the sweep sends what the failed
# producer could not). Last, a SIGTERM that arrives while the worker is still
# starting (failpoint slow-start) must be a clean stop, exit 0.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

if [ "${ORDERFLOW_FAILPOINTS_BUILT:-OFF}" != ON ]; then
    echo "# skipped: the failpoints are not compiled in (configure with -DORDERFLOW_FAILPOINTS=ON; ops/test does)"
    exit 77
fi

of_setup fatal
of_topics_create
sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values ('p-1', 'Bolt', 300, 100)"
good='{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":1}]}'
short=(ORDERFLOW_OUTBOX_SWEEP_GRACE=3s KAFKA_MESSAGE_TIMEOUT_MS=2500 ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s)

of_worker_start oc order-created "${short[@]}" ORDERFLOW_FAILPOINTS=producer-fatal@2
n=6
for ((i = 1; i <= n; i++)); do
    of_publish order.created "$OF_TAG-k$i" "$OF_TAG-o-$i" order.created "$good"
done
rc=0
pid=${OF_PIDS[oc]}
for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rc="still running after 60 s"
else
    wait "$pid" || rc=$?
fi
unset "OF_PIDS[oc]"
check "the fatal producer error stops the worker with exit 70" 70 "$rc"
check "which says why" yes \
    "$(grep -q 'shutting down after a fatal kafka error' "$OF_WORK/oc.log" && echo yes || echo no)"

of_worker_start oc2 order-created "${short[@]}"
wait_for "select count(*) = $n from orders where correlation_id like '$OF_TAG-o-%'" 90 || true
wait_for "select count(*) = 0 from outbox where published_at is null" 90 || true
check "after the restart every order exists once" "$n $n" \
    "$(sql "select count(*) || ' ' || count(distinct correlation_id) from orders
            where correlation_id like '$OF_TAG-o-%'")"
check "and every outbox row is published" 0 "$(sql "select count(*) from outbox where published_at is null")"
of_kafka_load order.status >/dev/null
check "each order's CREATED event is on order.status" "$n" \
    "$(sql "select count(distinct headers->>'ce_id') from kafka_records
            where topic = '${OF_PREFIX}order.status'")"

# A stop requested while the worker is still starting (a scale-down right
# after a restart) is a clean shutdown, not death by SIGTERM (exit 143).
of_worker_start slow order-created ORDERFLOW_FAILPOINTS=slow-start
pid=${OF_PIDS[slow]}
for ((i = 0; i < 100; i++)); do
    grep -qF 'slow-start\" fires' "$OF_WORK/slow.log" 2>/dev/null && break  # JSON-escaped quote
    sleep 0.1
done
check "the slow start is under way when SIGTERM is sent" yes "$(kill -0 "$pid" && grep -qF 'slow-start\" fires' "$OF_WORK/slow.log" && ! grep -q '"started: ' "$OF_WORK/slow.log" && echo yes || echo no)"
kill -TERM "$pid"
rc=0
if of__exited "$pid" 60; then
    wait "$pid" || rc=$?
else
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rc="still running after 60 s"
fi
unset "OF_PIDS[slow]"
check "SIGTERM during start-up: the worker exits 0 once started" 0 "$rc"
check "after a logged shutdown" yes \
    "$(grep -q 'signal 15: shutting down' "$OF_WORK/slow.log" && echo yes || echo no)"
of_finish
