#!/usr/bin/env bash
# test_outbox_sweep.sh OUTBOX_PLANS: the sweep drains the outbox even when
# claiming is slow, and only outbox_pending_key_idx answers the relay's
# per-key probe.
#
#   1. OUTBOX_PLANS (outbox_plans.c) checks the generic plans of the outbox
#      statements on this test's migrated database: each probe is an index
#      scan of outbox_pending_key_idx, and no other index could serve it.
#   2. Claiming is made slow: a trigger sleeps 20 ms for every row a sweep
#      claims, and order-created runs with --statement-timeout 3s. 600 held
#      rows (two per key) wait in the outbox when it starts: a claim of 500
#      would take 10 s and is cancelled, so the relay halves its claim until
#      one fits (orderflow_outbox_sweep_timeouts_total), sweeps again at once
#      while claims come back full, and doubles its claim back to 500 once
#      sweeps are quick. Every row reaches the topic once, each key's two in
#      order, and nothing is left pending.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

PLANS=$1
of_setup sweep
of_topics_create
T="${OF_PREFIX}order.status"
PORT=$((28800 + $$ % 200))

# 1: the plans.
plans_rc=0
DATABASE_URL=$OF_URL "$PLANS" >"$OF_WORK/plans.txt" 2>"$OF_WORK/plans.err" || plans_rc=$?
sed 's/^/# /' "$OF_WORK/plans.txt"
check "every outbox statement's per-key probe can only use outbox_pending_key_idx" "0 10" \
    "$plans_rc $(grep -c '^ok - ' "$OF_WORK/plans.txt")"
[ "$plans_rc" -eq 0 ] || sed 's/^/# /' "$OF_WORK/plans.err"

# 2: a slow claim.
sql "create function slow_claim() returns trigger language plpgsql as \$\$
     begin
         if new.attempts <> old.attempts then
             perform pg_sleep(0.02);
         end if;
         return new;
     end \$\$;
     create trigger slow_claim before update on outbox for each row execute function slow_claim()"
sql "insert into outbox (id, topic, key, payload, headers, held)
     select gen_random_uuid(), '$T', convert_to('$OF_TAG-k' || (i % 300), 'UTF8'),
            convert_to('{\"i\":' || i || '}', 'UTF8'),
            jsonb_build_array(jsonb_build_object('k', 'ce_id', 'v', '$OF_TAG-' || i)), true
     from generate_series(1, 600) i order by i"
of_worker_start oc order-created ORDERFLOW_HTTP_PORT=$PORT ORDERFLOW_STATEMENT_TIMEOUT=3s \
    ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s
metric() { of_metric "$PORT" "$1"; }

wait_for "select count(*) = 0 from outbox where published_at is null and dead_at is null" 120 || true
of_kafka_wait order.status "select count(*) >= 600 from kafka_records where topic = '$T'" 60 || true
check "every held row reached the topic once" "600 600" \
    "$(sql "select count(*) || ' ' || count(distinct headers->>'ce_id') from kafka_records
            where topic = '$T' and headers->>'ce_id' like '$OF_TAG-%'")"
check "each key's two rows in the order they were written" 0 \
    "$(sql "select count(*) from kafka_records a join kafka_records b
              on a.topic = b.topic and a.key = b.key and a.partition = b.partition
             and a.\"offset\" < b.\"offset\"
            where a.topic = '$T'
              and (a.value::jsonb->>'i')::integer > (b.value::jsonb->>'i')::integer")"
check "nothing is pending" 0 \
    "$(sql "select count(*) from outbox where published_at is null and dead_at is null")"
check "the claim of 500 was cancelled by the statement timeout" 1 \
    "$(grep -c 'claiming 500 row(s) was cancelled after .* (statement timeout); claiming 250 per sweep' \
        "$OF_WORK/oc.log" || true)"
check "orderflow_outbox_sweep_timeouts_total counts the cancelled claims" t \
    "$(t=$(metric orderflow_outbox_sweep_timeouts_total); [ "$t" != - ] && [ "$t" -ge 2 ] && echo t || echo "$t")"
of_metric_wait "$PORT" orderflow_outbox_sweep_limit 500 20 || true
check "once sweeps are quick the claim grows back to 500" 500 "$(metric orderflow_outbox_sweep_limit)"
check "... as the log says" 1 \
    "$(grep -c 'took [0-9]* ms; claiming 500 per sweep from now on' "$OF_WORK/oc.log" || true)"

of_finish
