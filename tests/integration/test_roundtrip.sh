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
# The widget machine's own tables: the runtime writes whatever its machine's SQL names.
sql "create table widgets (id uuid primary key, status text not null, version integer not null,
     status_reason text, correlation_id text not null, product_id text not null,
     updated_at timestamptz not null default now(), traceparent text);
     create table widget_executions (id uuid primary key, machine text not null,
     widget_id uuid not null, scope text, status text not null, current_state text not null,
     input jsonb, error text);
     create table widget_history (execution_id uuid not null references widget_executions (id),
     seq integer not null, step text not null, from_state text, to_state text, outcome text not null,
     event_id text, topic text, partition integer, \"offset\" bigint, detail jsonb,
     trace_id text, span_id text, parent_span_id text, primary key (execution_id, seq));
     insert into products (id, name, price_cents, stock) values ('p1', 'Widget stock', 100, 100);"
of_topics_create widget.in widget.in.dlq
# A widget of product "busy" always meets a serialization failure (transient).
sql "create function widgets_busy() returns trigger language plpgsql as \$\$
     begin
         if new.product_id = 'busy' then
             raise exception 'widget % is busy', new.id using errcode = '40001';
         end if;
         return new;
     end \$\$;
     create trigger widgets_busy before insert on widgets for each row execute function widgets_busy()"
of_process_start worker "$ORDERFLOW_BUILD_DIR/tests/integration/widget_worker" \
    ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s ORDERFLOW_RETRY_LIMIT=3 ORDERFLOW_RETRY_MAX=200ms

# 1. One event through two steps.
of_publish widget.in k1 "$OF_TAG-a" widget.created '{"product_id":"p1"}'
wait_for "select exists (select 1 from widgets where correlation_id = '$OF_TAG-a' and status = 'DONE')" 60 ||
    of_log_tails
wid=$(sql "select id from widgets where correlation_id = '$OF_TAG-a'")
check "widget reached DONE" DONE "$(sql "select status || '' from widgets where id = '$wid'")"
check "widget version counts both transitions" 2 "$(sql "select version from widgets where id = '$wid'")"
check "stock taken once" 99 "$(sql "select stock from products where id = 'p1'")"
check "one execution of the widget's own machine, succeeded" "1 WidgetProcess SUCCEEDED" \
    "$(sql "select count(*) || ' ' || max(machine) || ' ' || max(status) from widget_executions where widget_id = '$wid'")"
check "history has both steps in order" "CreateWidget,FinishWidget" \
    "$(sql "select string_agg(step, ',' order by seq) from widget_history h join widget_executions e on e.id = h.execution_id where e.widget_id = '$wid'")"
check "history names the causing event" "$OF_TAG-a" \
    "$(sql "select event_id from widget_history h join widget_executions e on e.id = h.execution_id where e.widget_id = '$wid' and seq = 1")"
# Tracing (machine.h): the event had no traceparent, so CreateWidget is the
# root of a new trace; FinishWidget, driven by its status event, is its child
# (the event carried ce_traceparent with CreateWidget's span); the widget keeps
# the span of its last step.
check "both steps are spans of one new trace, the second a child of the first" "1 2 true true" \
    "$(sql "select count(distinct trace_id) || ' ' || count(distinct span_id) || ' '
                   || bool_and(trace_id ~ '^[0-9a-f]{32}$' and span_id ~ '^[0-9a-f]{16}$') || ' '
                   || bool_and(case seq when 1 then parent_span_id is null
                               else parent_span_id = (select span_id from widget_history p
                                   where p.execution_id = h.execution_id and p.seq = 1) end)
            from widget_history h join widget_executions e on e.id = h.execution_id
            where e.widget_id = '$wid'")"
check "the widget keeps its last step's traceparent" t \
    "$(sql "select w.traceparent = '00-' || h.trace_id || '-' || h.span_id || '-01' from widgets w
            join widget_executions e on e.widget_id = w.id join widget_history h on h.execution_id = e.id
            where w.id = '$wid' and h.seq = 2")"
check "the order domain's tables are untouched" "0 0 0" \
    "$(sql "select (select count(*) from executions) || ' ' || (select count(*) from execution_history) || ' ' || (select count(*) from orders)")"
# DONE drives no step: the runtime settles it without a transaction, so no inbox row.
check "inbox has the events applied in a transaction (created, NEW), not DONE" 2 "$(sql "select count(*) from inbox where consumer = 'widget-worker'")"
wait_for "select count(*) = 2 and bool_and(published_at is not null) from outbox" 30 || true
check "both outbox rows published" "2 2" \
    "$(sql "select count(*) || ' ' || count(published_at) from outbox")"
events=$(kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic" -o beginning -e -q -f '%h|%s\n' |
    grep "ce_subject=$wid" | grep -c 'ce_type=widget.status.changed' || true)
check "both status events arrived on Kafka" 2 "$events"
check "each status event names its step's span in ce_traceparent" 2 \
    "$(kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic" -o beginning -e -q -f '%h\n' |
        grep "ce_subject=$wid" | grep -c -E "ce_traceparent=00-($(sql "select string_agg(h.trace_id || '-' || h.span_id, '|')
            from widget_history h join widget_executions e on e.id = h.execution_id where e.widget_id = '$wid'"))-01" || true)"
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

# 3. Failures that no retry can mend end as dead letters, the events behind
#    them processed: a step that fails the same way every time (product
#    "explode"), and a transient failure that never clears (product "busy",
#    retry-limit 3). Both sit in a batch with a valid event on either side.
of_publish widget.in k2 "$OF_TAG-c1" widget.created '{"product_id":"p1"}'
of_publish widget.in k2 "$OF_TAG-x" widget.created '{"product_id":"explode"}'
of_publish widget.in k2 "$OF_TAG-c2" widget.created '{"product_id":"p1"}'
of_publish widget.in k2 "$OF_TAG-busy" widget.created '{"product_id":"busy"}'
of_publish widget.in k2 "$OF_TAG-c3" widget.created '{"product_id":"p1"}'
wait_for "select count(*) = 3 and bool_and(status = 'DONE') from widgets
          where correlation_id in ('$OF_TAG-c1', '$OF_TAG-c2', '$OF_TAG-c3')" 60 || of_log_tails
wait_for "select count(*) = 2 from dead_letters where ce_id in ('$OF_TAG-x', '$OF_TAG-busy')" 30 || true
check "the events around the failing ones reached DONE" 3 \
    "$(sql "select count(*) from widgets where correlation_id in ('$OF_TAG-c1', '$OF_TAG-c2', '$OF_TAG-c3') and status = 'DONE'")"
check "a deterministic step error is dead-lettered as PROCESSING_FAILED, with the step and error" \
    "PROCESSING_FAILED|step \"CreateWidget\" of the widget machine failed: invalid argument or value" \
    "$(sql "select error_code || '|' || reason from dead_letters where ce_id = '$OF_TAG-x'")"
check "a transient failure that never clears is dead-lettered as RETRIES_EXHAUSTED" "RETRIES_EXHAUSTED" \
    "$(sql "select error_code from dead_letters where ce_id = '$OF_TAG-busy'")"
check "the exhausted event's reason names the last failure" 1 \
    "$(sql "select count(*) from dead_letters where ce_id = '$OF_TAG-busy' and reason like 'gave up after 3 transient failures:%is busy%'")"
check "neither failing event left a widget or an inbox row" "0 0" \
    "$(sql "select (select count(*) from widgets where correlation_id in ('$OF_TAG-x', '$OF_TAG-busy')) || ' ' ||
                   (select count(*) from inbox where ce_id in ('$OF_TAG-x', '$OF_TAG-busy'))")"
check "stock taken once for each of the three valid events" 95 "$(sql "select stock from products where id = 'p1'")"

# 4. A batch that cannot commit (retry-limit out of reach) turns /readyz
#    false after stall-timeout, and true again once it commits. The first
#    worker stops (SIGTERM drains and exits 0; ASan builds also fail here on
#    leaks); a second one, in a group of its own with a retry limit out of
#    reach, rereads the topic (the earlier records are inbox duplicates or
#    dead already) and stalls on the busy record.
of_worker_stop worker
check "worker logged its clean stop" 1 "$(grep -c '"msg":"stopped:' "$OF_WORK/worker.log" || true)"
PORT=$((28700 + $$ % 200))
of_publish widget.in k3 "$OF_TAG-stall" widget.created '{"product_id":"busy"}'
of_process_start stall "$ORDERFLOW_BUILD_DIR/tests/integration/widget_worker" \
    ORDERFLOW_GROUP_ID="$OF_TAG-stall" ORDERFLOW_RETRY_LIMIT=1000 ORDERFLOW_RETRY_MAX=200ms \
    ORDERFLOW_STALL_TIMEOUT=1s ORDERFLOW_HTTP_PORT=$PORT
readyz() { curl -sS "http://127.0.0.1:$PORT/readyz" 2>/dev/null || true; }
for _ in $(seq 120); do case "$(readyz)" in *"no commit"*) break ;; esac; sleep 0.5; done
check "a batch that cannot commit makes /readyz say so" 1 "$(readyz | grep -c 'not ready: no commit for' || true)"
sql "drop trigger widgets_busy on widgets"
for _ in $(seq 120); do [ "$(readyz)" = ready ] && break; sleep 0.5; done
check "once it commits the worker is ready again" ready "$(readyz)"
# The new record may come in the batch after the stalled one: a batch that ran
# long paused fetching, and fetching resumes after it (kafka.h).
wait_for "select count(*) = 1 from widgets where correlation_id = '$OF_TAG-stall'" 30 || true
check "and the stalled event applied, not dead-lettered" "1 0" \
    "$(sql "select (select count(*) from widgets where correlation_id = '$OF_TAG-stall') || ' ' ||
                   (select count(*) from dead_letters where ce_id = '$OF_TAG-stall')")"
of_worker_stop stall

of_finish
