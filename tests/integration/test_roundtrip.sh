#!/usr/bin/env bash
# test_roundtrip.sh: the common runtime end to end against the real stack.
#
# A CloudEvent published to Kafka is consumed by widget_worker (built only on
# common/), applied in one Postgres transaction with inbox and outbox rows;
# the outbox event reaches Kafka and drives the next step; a redelivered
# ce_id has no second effect; a malformed record is dead-lettered (row and
# DLQ topic) while the event behind it is processed; SIGTERM drains and
# exits 0. Each run uses its own database and topic prefix (lib.sh).
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup rt
topic="${OF_PREFIX}widget.in"
sql "create table widgets (id uuid primary key, status text not null, version integer not null,
     status_reason text, correlation_id text not null, product_id text not null,
     updated_at timestamptz not null default now());
     insert into products (id, name, price_cents, stock) values ('p1', 'Widget stock', 100, 100);"
of_topics_create widget.in widget.in.dlq
of_process_start worker "$ORDERFLOW_BUILD_DIR/tests/integration/widget_worker" \
    ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s

# 1. One event through two steps.
of_publish widget.in k1 "$OF_TAG-a" widget.created '{"product_id":"p1"}'
wait_for "select exists (select 1 from widgets where correlation_id = '$OF_TAG-a' and status = 'DONE')" 60 ||
    of_log_tails
wid=$(sql "select id from widgets where correlation_id = '$OF_TAG-a'")
check "widget reached DONE" DONE "$(sql "select status || '' from widgets where id = '$wid'")"
check "widget version counts both transitions" 2 "$(sql "select version from widgets where id = '$wid'")"
check "stock taken once" 99 "$(sql "select stock from products where id = 'p1'")"
check "one execution, succeeded" "1 SUCCEEDED" \
    "$(sql "select count(*) || ' ' || max(status) from executions where order_id = '$wid'")"
check "history has both steps in order" "CreateWidget,FinishWidget" \
    "$(sql "select string_agg(step, ',' order by seq) from execution_history h join executions e on e.id = h.execution_id where e.order_id = '$wid'")"
check "history names the causing event" "$OF_TAG-a" \
    "$(sql "select event_id from execution_history h join executions e on e.id = h.execution_id where e.order_id = '$wid' and seq = 1")"
check "inbox has the three events consumed (created, NEW, DONE)" 3 "$(sql "select count(*) from inbox where consumer = 'widget-worker'")"
wait_for "select count(*) = 2 and bool_and(published_at is not null) from outbox" 30 || true
check "both outbox rows published" "2 2" \
    "$(sql "select count(*) || ' ' || count(published_at) from outbox")"
events=$(kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic" -o beginning -e -q -f '%h|%s\n' |
    grep "ce_subject=$wid" | grep -c 'ce_type=widget.status.changed' || true)
check "both status events arrived on Kafka" 2 "$events"
check "status events are binary-mode CloudEvents from orderflow" 2 \
    "$(kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic" -o beginning -e -q -f '%h\n' |
        grep "ce_subject=$wid" | grep 'ce_specversion=1.0' | grep -c 'ce_source=orderflow/widget-worker' || true)"

# 2. Redelivery of the same ce_id, then a poison record, then a new event,
#    all with one key (one partition, in order).
of_publish widget.in k1 "$OF_TAG-a" widget.created '{"product_id":"p1"}'
of_publish_raw widget.in k1 '{"product_id": ' -H ce_specversion=1.0 -H "ce_id=$OF_TAG-bad" \
    -H ce_type=widget.created -H ce_source=test -H content-type=application/json
of_publish widget.in k1 "$OF_TAG-b" widget.created '{"product_id":"p1"}'
wait_for "select exists (select 1 from widgets where correlation_id = '$OF_TAG-b' and status = 'DONE')" 60 ||
    of_log_tails
check "second event processed behind the poison record" DONE \
    "$(sql "select status from widgets where correlation_id = '$OF_TAG-b'")"
check "redelivered ce_id had no second effect" 1 \
    "$(sql "select count(*) from widgets where correlation_id = '$OF_TAG-a'")"
check "stock taken once per distinct event" 98 "$(sql "select stock from products where id = 'p1'")"
check "inbox keeps one row per ce_id" 1 "$(sql "select count(*) from inbox where ce_id = '$OF_TAG-a'")"
check "poison record dead-lettered with its code" "1 MALFORMED_JSON" \
    "$(sql "select count(*) || ' ' || max(error_code) from dead_letters where topic = '$topic'")"
check "dead letter keeps the original bytes" '{"product_id": ' \
    "$(sql "select convert_from(payload, 'UTF8') from dead_letters where topic = '$topic'")"
sleep 1
dlq=$(kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic.dlq" -o beginning -e -q -f '%h\n' || true)
check "DLQ topic has one copy" 1 "$(printf '%s\n' "$dlq" | grep -c 'dlq_error_code=MALFORMED_JSON' || true)"
check "DLQ copy names its source" 1 \
    "$(printf '%s\n' "$dlq" | grep "dlq_topic=$topic" | grep -c 'dlq_worker=widget-worker' || true)"

# 3. Graceful shutdown: SIGTERM drains and exits 0 (ASan builds also fail here on leaks).
of_worker_stop worker
check "worker logged its clean stop" 1 "$(grep -c '"msg":"stopped:' "$OF_WORK/worker.log" || true)"
of_finish
