#!/usr/bin/env bash
# test_retention.sh: pruning takes exactly the rows past their retention.
#
# Rows are seeded with old timestamps: some past a retention of 1 h (due),
# some within it, and rows that must stay whatever their age: an unpublished
# outbox row, a dead letter never redriven, a pending deadline, a running
# execution, and the rows of another worker (order-created, which is not
# running). Two order-status replicas prune with a short interval and a batch
# of 10 (so the inbox takes several batches, and the replicas meet on the same
# rows). Then: exactly the due rows of order-status are gone (a dead letter's
# redrives with it, an execution's history with it), every other row is
# there; the counters of both replicas add up to what was due and the
# oldest-age gauges name a kept row; `orderctl prune --dry-run` counts what
# only it prunes (the other worker's rows) without deleting, a real run
# deletes just that, and a second dry run finds nothing. Settings below the
# floors stop a worker with exit 78.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup retention
of_topics_create order.status

OLD="now() - interval '3 hours'"   # past the 1 h retentions of this test
RECENT="now() - interval '30 minutes'" # within them
sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into orders (id, customer_id, status, correlation_id, source_event_id)
         select ('00000000-0000-7000-8000-00000000000' || g)::uuid, 'c-1', 'CONFIRMED', 'c' || g, 's' || g
         from generate_series(1, 4) g;
     -- inbox: 25 due rows of order-status, one recent, one due row of order-created
     insert into inbox (consumer, ce_id, topic, partition, \"offset\", processed_at)
         select 'order-status', 'old-' || g, 't', 0, g, $OLD - g * interval '1 second'
         from generate_series(1, 25) g;
     insert into inbox (consumer, ce_id, topic, partition, \"offset\", processed_at) values
         ('order-status', 'recent', 't', 0, 100, $RECENT),
         ('order-created', 'oc-old', 't', 0, 1, $OLD);
     -- outbox: 3 published long ago, 1 recently; 1 old and never published,
     -- leased so that the sweep leaves it alone
     insert into outbox (id, topic, payload, created_at, published_at, claimed_until)
         select gen_random_uuid(), 'x', 'old', $OLD, $OLD, null from generate_series(1, 3);
     insert into outbox (id, topic, payload, created_at, published_at, claimed_until) values
         ('00000000-0000-7000-8000-0000000000a1', 'x', 'recent', $OLD, $RECENT, null),
         ('00000000-0000-7000-8000-0000000000a2', 'x', 'unpublished', $OLD, null, now() + interval '1 day');
     -- dead letters: order-status's redriven long ago (with a redrive), redriven
     -- recently, never redriven; order-created's redriven long ago
     insert into dead_letters (worker, topic, partition, \"offset\", payload, error_code, reason,
                               created_at, redriven_at, redrive_count) values
         ('order-status', 't', 0, 1, 'a', 'E', 'redriven-old', $OLD, $OLD, 1),
         ('order-status', 't', 0, 2, 'b', 'E', 'redriven-recent', $OLD, $RECENT, 1),
         ('order-status', 't', 0, 3, 'c', 'E', 'unresolved', $OLD, null, 0),
         ('order-created', 't', 0, 4, 'd', 'E', 'other-worker', $OLD, $OLD, 1);
     insert into redrives (dead_letter_id, at, topic, partition, \"offset\")
         select id, $OLD, 't', 0, 10 from dead_letters where reason = 'redriven-old';
     -- deadlines: fired and cancelled long ago, fired recently, pending
     insert into deadlines (order_id, kind, due_at, fired_at, cancelled_at) values
         ('00000000-0000-7000-8000-000000000001', 'PAYMENT', $OLD, $OLD, null),
         ('00000000-0000-7000-8000-000000000002', 'PAYMENT', now() + interval '1 day', null, $OLD),
         ('00000000-0000-7000-8000-000000000003', 'PAYMENT', $OLD, $RECENT, null),
         ('00000000-0000-7000-8000-000000000004', 'PAYMENT', now() + interval '1 day', null, null);
     -- executions: finished long ago (with history), finished recently, running since long ago
     insert into executions (id, machine, order_id, status, current_state, started_at, stopped_at) values
         ('00000000-0000-7000-8000-0000000000e1', 'OrderProcess', '00000000-0000-7000-8000-000000000001',
          'SUCCEEDED', 'CONFIRMED', $OLD, $OLD),
         ('00000000-0000-7000-8000-0000000000e2', 'OrderProcess', '00000000-0000-7000-8000-000000000002',
          'FAILED', 'REJECTED', $OLD, $RECENT),
         ('00000000-0000-7000-8000-0000000000e3', 'OrderUpdate', '00000000-0000-7000-8000-000000000001',
          'RUNNING', 'CONFIRMED', $OLD, null);
     insert into execution_history (execution_id, seq, at, step) values
         ('00000000-0000-7000-8000-0000000000e1', 1, $OLD, 'CreateOrder'),
         ('00000000-0000-7000-8000-0000000000e1', 2, $OLD, 'OrderCompleted'),
         ('00000000-0000-7000-8000-0000000000e3', 1, $OLD, 'Start');"

# What is left, table by table, as one line each (compared whole below).
left() {
    sql "select 'inbox ' || count(*) filter (where ce_id like 'old-%') || ' '
                || string_agg(ce_id, ',' order by ce_id) filter (where ce_id not like 'old-%') from inbox;
         select 'outbox ' || string_agg(convert_from(payload, 'UTF8'), ',' order by payload) from outbox;
         select 'dead_letters ' || string_agg(reason, ',' order by reason) from dead_letters;
         select 'redrives ' || count(*) from redrives;
         select 'deadlines ' || string_agg(right(order_id::text, 1), ',' order by order_id) from deadlines;
         select 'executions ' || string_agg(right(id::text, 2), ',' order by id) from executions;
         select 'history ' || count(*) from execution_history" | paste -sd'|'
}
check "the seed as expected" \
    "inbox 25 oc-old,recent|outbox old,old,old,recent,unpublished|dead_letters other-worker,redriven-old,redriven-recent,unresolved|redrives 1|deadlines 1,2,3,4|executions e1,e2,e3|history 3" \
    "$(left)"

# --- settings below the floors: exit 78 before anything runs ------------------------------
bin="$ORDERFLOW_BUILD_DIR/workers/order-status/orderflow-order-status"
rc=0
DATABASE_URL="$OF_URL" ORDERFLOW_RETENTION_INBOX=59s timeout 20 "$bin" >"$OF_WORK/floor.log" 2>&1 || rc=$?
check "an inbox retention under 1 min stops the worker with exit 78" 78 "$rc"
rc=0
DATABASE_URL="$OF_URL" ORDERFLOW_RETENTION_HISTORY=30m ORDERFLOW_HTTP_PORT=0 timeout 20 "$bin" \
    >>"$OF_WORK/floor.log" 2>&1 || rc=$?
check "a history retention neither 0 nor 1 h or more stops it with exit 78" 78 "$rc"

# --- two replicas prune ----------------------------------------------------------------------
P1=$((28300 + $$ % 50))
P2=$((P1 + 50))
prune_env=(ORDERFLOW_HTTP_ADDRESS=127.0.0.1 ORDERFLOW_PRUNE_INTERVAL=300ms ORDERFLOW_PRUNE_BATCH=10
    ORDERFLOW_RETENTION_INBOX=1h ORDERFLOW_RETENTION_OUTBOX=1h ORDERFLOW_RETENTION_DEAD_LETTERS=1h
    ORDERFLOW_RETENTION_DEADLINES=1h ORDERFLOW_RETENTION_HISTORY=1h)
of_worker_start os1 order-status ORDERFLOW_HTTP_PORT=$P1 "${prune_env[@]}"
of_worker_start os2 order-status ORDERFLOW_HTTP_PORT=$P2 "${prune_env[@]}"
wait_for "select not exists (select 1 from inbox where ce_id like 'old-%')
            and not exists (select 1 from dead_letters where reason = 'redriven-old')
            and not exists (select 1 from deadlines where fired_at < now() - interval '1 hour'
                                                      or cancelled_at < now() - interval '1 hour')
            and not exists (select 1 from executions where stopped_at < now() - interval '1 hour')
            and (select count(*) from outbox) = 2" 60 || true
check "order-status's due rows are gone, everything else is there" \
    "inbox 0 oc-old,recent|outbox recent,unpublished|dead_letters other-worker,redriven-recent,unresolved|redrives 0|deadlines 3,4|executions e2,e3|history 1" \
    "$(left)"

# Both replicas' counters add up to what was due; the gauges name a kept row
# (30 min old: under the 1 h retention, well over 0).
metric() { # metric NAME TABLE: the sum over both replicas
    local port sum=0 v
    for port in $P1 $P2; do
        v=$(curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" |
            awk -v m="$1{table=\"$2\"}" '$1 == m {print $2}')
        sum=$(awk -v a="$sum" -v b="${v:-0}" 'BEGIN {print a + b}')
    done
    echo "$sum"
}
wait_counters() {
    local i
    for ((i = 0; i < 50; i++)); do
        [ "$(metric orderflow_pruned_rows_total inbox) $(metric orderflow_pruned_rows_total deadlines)" = "25 2" ] &&
            return 0
        sleep 0.2
    done
}
wait_counters
check "orderflow_pruned_rows_total by table (both replicas)" "inbox 25 outbox 3 dead_letters 1 deadlines 2 executions 1" \
    "$(for t in inbox outbox dead_letters deadlines executions; do printf '%s %s ' "$t" "$(metric orderflow_pruned_rows_total "$t")"; done | sed 's/ $//')"
for t in inbox outbox dead_letters deadlines executions; do
    age=$(curl -fsS --max-time 5 "http://127.0.0.1:$P1/metrics" |
        awk -v m="orderflow_prune_oldest_age_seconds{table=\"$t\"}" '$1 == m {print int($2)}')
    check "orderflow_prune_oldest_age_seconds{table=\"$t\"} is the kept row's age (30 min)" ok \
        "$( ((${age:-0} >= 1700 && ${age:-0} < 3600)) && echo ok || echo "${age:-missing}")"
done
# One info line per cycle that pruned: "pruned N row(s) in B batch(es), T ms: inbox 15, ...".
cycles=$(cat "$OF_WORK/os1.log" "$OF_WORK/os2.log" | jq -R -r 'fromjson? | select(.level == "info") | .msg' |
    grep '^pruned [0-9]* row(s) in [0-9]* batch(es)' || true)
check "cycles that pruned logged it at info, 32 rows in all" 32 \
    "$(awk '{n += $2} END {print n + 0}' <<<"$cycles")"
check "a cycle went on after a full batch (more than 10 inbox rows in one cycle)" ok \
    "$(grep -oE 'inbox [0-9]+' <<<"$cycles" | awk '$2 > 10 {found = 1} END {print found ? "ok" : "none"}')"
check "no prune statement failed" 0 "$(cat "$OF_WORK/os1.log" "$OF_WORK/os2.log" | grep -c 'could not prune' || true)"
# Stopped once their group has formed (a consumer closed amid its first join
# can trip an assertion of librdkafka's sticky assignor).
for ((i = 0; i < 600; i++)); do
    a=$(of_worker_partitions os1)
    b=$(of_worker_partitions os2)
    [ "$a" -gt 0 ] && [ "$b" -gt 0 ] && [ $((a + b)) -eq 6 ] && break
    sleep 0.1
done
of_worker_stop os1
of_worker_stop os2

# --- orderctl prune: every worker's rows ------------------------------------------------------
octl=("$OF_ORDERCTL" prune --database-url "$OF_URL" --retention-inbox 1h --retention-outbox 1h
    --retention-dead-letters 1h --retention-deadlines 1h --prune-batch 10)
dry=$("${octl[@]}" --dry-run --retention-history 1h)
check "orderctl prune --dry-run counts the other worker's due rows" \
    "inbox 1|outbox 0|dead_letters 1|executions 0|deadlines 0" \
    "$(awk 'NR > 1 {print $1, $3}' <<<"$dry" | paste -sd'|')"
check "and deletes nothing" \
    "inbox 0 oc-old,recent|outbox recent,unpublished|dead_letters other-worker,redriven-recent,unresolved|redrives 0|deadlines 3,4|executions e2,e3|history 1" \
    "$(left)"
out=$("${octl[@]}" --table inbox --table dead_letters)
check "orderctl prune --table prints the rows deleted of those tables" "inbox 1h 1|dead_letters 1h 1" \
    "$(awk 'NR > 1 {print $1, $2, $3}' <<<"$out" | paste -sd'|')"
check "and deletes just those" \
    "inbox 0 recent|outbox recent,unpublished|dead_letters redriven-recent,unresolved|redrives 0|deadlines 3,4|executions e2,e3|history 1" \
    "$(left)"
check "a dry run finds nothing more (history kept by default)" \
    "inbox 0|outbox 0|dead_letters 0|executions -|deadlines 0" \
    "$("${octl[@]}" --dry-run | awk 'NR > 1 {print $1, $3}' | paste -sd'|')"
rc=0
"${octl[@]}" --retention-inbox 30s >/dev/null 2>&1 || rc=$?
check "orderctl prune refuses an inbox retention under 1 min" 64 "$rc"
of_finish
