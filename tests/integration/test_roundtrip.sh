#!/usr/bin/env bash
# test_roundtrip.sh: the common runtime end to end against the real stack.
#
# A CloudEvent published to Kafka is consumed by widget_worker (built only on
# common/), applied in one Postgres transaction with inbox and outbox rows;
# the outbox event reaches Kafka and drives the next step; a redelivered
# ce_id has no second effect; a malformed record is dead-lettered (row and
# DLQ topic) while the event behind it is processed; SIGTERM drains and
# exits 0. Each run uses its own database and topic prefix.
set -euo pipefail

: "${ORDERFLOW_BUILD_DIR:?set by ctest}" "${ORDERFLOW_SOURCE_DIR:?set by ctest}"
: "${KAFKA_BOOTSTRAP_SERVERS:?}" "${PGPORT:?}"
orderctl=$ORDERFLOW_BUILD_DIR/tools/orderctl/orderctl
worker=$ORDERFLOW_BUILD_DIR/tests/integration/widget_worker
tag="rt$$x$(date +%s)"
db="of_${tag}"
url="postgresql://orderflow@127.0.0.1:${PGPORT}/${db}"
topic="${tag}.widget.in"
work=$(mktemp -d)
worker_pid=

cleanup() {
    if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
        kill -KILL "$worker_pid" 2>/dev/null || true
    fi
    dropdb --if-exists "$db" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
check() { # check <description> <expected> <actual>
    if [ "$2" = "$3" ]; then
        passed=$((passed + 1))
        echo "ok - $1"
    else
        failed=$((failed + 1))
        echo "not ok - $1: expected '$2', got '$3'"
    fi
}
sql() { psql "$url" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
wait_for() { # wait_for <sql returning t> <seconds>
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        [ "$(sql "$1")" = t ] && return 0
        sleep 0.1
    done
    return 1
}
publish() { # publish <key> <ce_id> <ce_type> <json>
    printf '%s\n' "$4" | kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic" -k "$1" \
        -H ce_specversion=1.0 -H "ce_id=$2" -H "ce_type=$3" -H ce_source=test/roundtrip \
        -H content-type=application/json
}

createdb "$db"
DATABASE_URL=$url "$orderctl" migrate up --dir "$ORDERFLOW_SOURCE_DIR/migrations" >/dev/null
sql "create table widgets (id uuid primary key, status text not null, version integer not null,
     status_reason text, correlation_id text not null, product_id text not null,
     updated_at timestamptz not null default now());
     insert into products (id, name, price_cents, stock) values ('p1', 'Widget stock', 100, 100);"
"$orderctl" topics create --topic-prefix "$tag." --partitions 3 widget.in widget.in.dlq >/dev/null

DATABASE_URL=$url ORDERFLOW_TOPIC_PREFIX="$tag." ORDERFLOW_GROUP_ID="$tag" \
    ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s LOG_LEVEL=debug \
    "$worker" >"$work/worker.log" 2>&1 &
worker_pid=$!

# 1. One event through two steps.
publish k1 "$tag-a" widget.created '{"product_id":"p1"}'
if ! wait_for "select exists (select 1 from widgets where correlation_id = '$tag-a' and status = 'DONE')" 60; then
    echo "widget did not reach DONE; worker log:"
    tail -n 40 "$work/worker.log"
fi
wid=$(sql "select id from widgets where correlation_id = '$tag-a'")
check "widget reached DONE" DONE "$(sql "select status || '' from widgets where id = '$wid'")"
check "widget version counts both transitions" 2 "$(sql "select version from widgets where id = '$wid'")"
check "stock taken once" 99 "$(sql "select stock from products where id = 'p1'")"
check "one execution, succeeded" "1 SUCCEEDED" \
    "$(sql "select count(*) || ' ' || max(status) from executions where order_id = '$wid'")"
check "history has both steps in order" "CreateWidget,FinishWidget" \
    "$(sql "select string_agg(step, ',' order by seq) from execution_history h join executions e on e.id = h.execution_id where e.order_id = '$wid'")"
check "history names the causing event" "$tag-a" \
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
publish k1 "$tag-a" widget.created '{"product_id":"p1"}'
printf '%s\n' '{"product_id": ' | kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic" -k k1 \
    -H ce_specversion=1.0 -H "ce_id=$tag-bad" -H ce_type=widget.created -H ce_source=test \
    -H content-type=application/json
publish k1 "$tag-b" widget.created '{"product_id":"p1"}'
wait_for "select exists (select 1 from widgets where correlation_id = '$tag-b' and status = 'DONE')" 60 ||
    tail -n 40 "$work/worker.log"
check "second event processed behind the poison record" DONE \
    "$(sql "select status from widgets where correlation_id = '$tag-b'")"
check "redelivered ce_id had no second effect" 1 \
    "$(sql "select count(*) from widgets where correlation_id = '$tag-a'")"
check "stock taken once per distinct event" 98 "$(sql "select stock from products where id = 'p1'")"
check "inbox keeps one row per ce_id" 1 "$(sql "select count(*) from inbox where ce_id = '$tag-a'")"
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
kill -TERM "$worker_pid"
rc=0
wait "$worker_pid" || rc=$?
worker_pid=
check "worker exits 0 on SIGTERM" 0 "$rc"
check "worker logged its clean stop" 1 "$(grep -c '"msg":"stopped:' "$work/worker.log" || true)"
if [ "$failed" -ne 0 ]; then
    echo "--- worker log (tail) ---"
    tail -n 60 "$work/worker.log"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
