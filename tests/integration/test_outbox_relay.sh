#!/usr/bin/env bash
# test_outbox_relay.sh: the relay keeps each key's order and gives up on a row
# the broker will never take.
#
# order-created runs with a producer that refuses records over 4000 bytes
# (KAFKA_MESSAGE_MAX_BYTES) and --outbox-max-failures 3. Bad records on
# order.created are dead-lettered, and their DLQ copies go through the outbox
# keyed like the record, which makes the relay's rules visible on the .dlq
# topic:
#   1. a DLQ copy too large for the producer fails permanently, is retried by
#      the sweep, and is dead (outbox.dead_at, failures 3) after the third
#      failure; orderflow_outbox_dead_total counts it;
#   2. a small DLQ copy of the same key written while the large one is pending
#      is held behind it and goes out once the large one is dead;
#   3. a row of a key whose older row has been pending for 5 s elsewhere
#      (inserted here with a live lease, as if another relay had it in flight
#      and its delivery were failing) is held: not on the topic while that row
#      is pending, sent by the sweep once it is published;
#      orderflow_outbox_held_total counts it;
#   4. a row of a key whose older row was written a moment ago by another
#      process (another sender: a replica that had the partition before a
#      rebalance, or one that died after its commit) is held, though that row
#      is neither held nor 2 s old: only a producer's own queue keeps order;
#   5. a large and a small record of one key polled together: the large copy
#      fails as it is enqueued, and the small one, written in the same
#      transaction (which could not see the failure), is held, not sent past it;
#   6. `orderctl outbox list --dead` shows the dead row and why; `outbox retry`
#      refuses an unknown id (66) and the dead row (65: the small copy of its
#      key went out since), and with --force, once the worker runs without the
#      size limit (the fix), the row goes out, after the small copy.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup relay
of_topics_create
T="${OF_PREFIX}order.created"
PORT=$((28600 + $$ % 200))
of_worker_start oc order-created ORDERFLOW_HTTP_PORT=$PORT KAFKA_MESSAGE_MAX_BYTES=4000 \
    ORDERFLOW_OUTBOX_MAX_FAILURES=3 ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s

bad() { # bad KEY CE_ID PADDING: an order.created with no items (OUT_OF_RANGE)
    of_publish order.created "$1" "$2" order.created \
        "{\"customer_id\":\"c-1\",\"items\":[],\"note\":\"$3\"}"
}
metric() { curl -fsS "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2 + 0}'; }
big=$(head -c 6000 /dev/zero | tr '\0' x)

# 1 and 2: a large DLQ copy, then a small one of the same key.
bad "$OF_TAG-k1" "$OF_TAG-big" "$big"
wait_for "select count(*) = 1 from outbox where topic = '$T.dlq' and failures >= 1" 60 || true
bad "$OF_TAG-k1" "$OF_TAG-small" "small"
wait_for "select count(*) = 1 from outbox where topic = '$T.dlq' and dead_at is not null" 90 || true
check "the DLQ copy too large for the producer is dead after 3 permanent failures" \
    "3 true" "$(sql "select failures || ' ' || (last_error ilike '%too large%') from outbox
                  where topic = '$T.dlq' and dead_at is not null")"
check "orderflow_outbox_dead_total counts it" 1 "$(metric orderflow_outbox_dead_total)"
of_kafka_wait order.created.dlq "select count(*) >= 1 from kafka_records where topic = '$T.dlq'" 60 || true
check "the small copy of the same key went out after it, alone" "1 $OF_TAG-small" \
    "$(sql "select count(*) || ' ' || min(headers->>'ce_id') from kafka_records where topic = '$T.dlq'")"
check "the small copy was held behind the large one" t \
    "$(sql "select held from outbox o where topic = '$T.dlq' and dead_at is null")"

# 3: an older row of key k2 pending under another relay's lease.
sql "insert into outbox (id, topic, key, payload, claimed_until, created_at)
     values ('00000000-0000-4000-8000-00000000000a', '$T.dlq', convert_to('$OF_TAG-k2', 'UTF8'),
             convert_to('in flight elsewhere', 'UTF8'), now() + interval '1 hour',
             now() - interval '5 seconds')"
bad "$OF_TAG-k2" "$OF_TAG-behind" "behind"
wait_for "select count(*) = 1 from dead_letters where ce_id = '$OF_TAG-behind'" 60 || true
sleep 3 # three sweeps
of_kafka_load order.created.dlq >/dev/null
check "while the older row of its key is pending the new row is held, not sent" "true 0" \
    "$(sql "select bool_and(held) || ' ' || (select count(*) from kafka_records
                                             where topic = '$T.dlq' and key = '$OF_TAG-k2')
            from outbox where topic = '$T.dlq' and key = convert_to('$OF_TAG-k2', 'UTF8')
             and id <> '00000000-0000-4000-8000-00000000000a'")"
check "orderflow_outbox_held_total counts the held rows" 2 "$(metric orderflow_outbox_held_total)"
sql "update outbox set published_at = now() where id = '00000000-0000-4000-8000-00000000000a'"
of_kafka_wait order.created.dlq "select count(*) = 1 from kafka_records
                                 where topic = '$T.dlq' and key = '$OF_TAG-k2'" 60 || true
check "once it is published the sweep sends the held row" "1 $OF_TAG-behind" \
    "$(sql "select count(*) || ' ' || min(headers->>'ce_id') from kafka_records
            where topic = '$T.dlq' and key = '$OF_TAG-k2'")"
check "nothing pending is left" 0 \
    "$(sql "select count(*) from outbox where published_at is null and dead_at is null")"

# 4: an older row of key k3 written just now by another sender, not held and
# not sent yet (created_at ahead: it never looks late to the sweep either).
sql "insert into outbox (id, topic, key, payload, created_at, sender)
     values ('00000000-0000-4000-8000-00000000000b', '$T.dlq', convert_to('$OF_TAG-k3', 'UTF8'),
             convert_to('on its way elsewhere', 'UTF8'), now() + interval '1 hour',
             '00000000-0000-4000-8000-0000000000cc')"
bad "$OF_TAG-k3" "$OF_TAG-other" "other"
wait_for "select count(*) = 1 from dead_letters where ce_id = '$OF_TAG-other'" 60 || true
sleep 3 # three sweeps
of_kafka_load order.created.dlq >/dev/null
check "a row behind another sender's pending row of its key is held, not sent" "true 0" \
    "$(sql "select bool_and(held) || ' ' || (select count(*) from kafka_records
                                             where topic = '$T.dlq' and key = '$OF_TAG-k3')
            from outbox where topic = '$T.dlq' and key = convert_to('$OF_TAG-k3', 'UTF8')
             and id <> '00000000-0000-4000-8000-00000000000b'")"
check "the worker's own rows carry its sender id" 1 \
    "$(sql "select count(distinct sender) from outbox where topic = '$T.dlq'
             and key = convert_to('$OF_TAG-k3', 'UTF8')
             and id <> '00000000-0000-4000-8000-00000000000b'")"
sql "update outbox set published_at = now() where id = '00000000-0000-4000-8000-00000000000b'"
of_kafka_wait order.created.dlq "select count(*) = 1 from kafka_records
                                 where topic = '$T.dlq' and key = '$OF_TAG-k3'" 60 || true
check "once the other sender's row is published the held row goes out" "1 $OF_TAG-other" \
    "$(sql "select count(*) || ' ' || min(headers->>'ce_id') from kafka_records
            where topic = '$T.dlq' and key = '$OF_TAG-k3'")"

# 5: a large and a small record of key k4, waiting together for the worker.
of_worker_stop oc
bad "$OF_TAG-k4" "$OF_TAG-big4" "$big"
bad "$OF_TAG-k4" "$OF_TAG-small4" "small"
of_worker_start oc3 order-created ORDERFLOW_HTTP_PORT=$((PORT + 2)) KAFKA_MESSAGE_MAX_BYTES=4000 \
    ORDERFLOW_OUTBOX_MAX_FAILURES=3 ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s
wait_for "select count(*) = 1 from outbox where topic = '$T.dlq' and dead_at is not null
           and key = convert_to('$OF_TAG-k4', 'UTF8')" 90 || true
of_kafka_wait order.created.dlq "select count(*) >= 1 from kafka_records
                                 where topic = '$T.dlq' and key = '$OF_TAG-k4'" 60 || true
check "the small copy was held behind the large one that failed before it was sent" \
    "true $OF_TAG-small4 1" \
    "$(sql "select o.held || ' ' || (select h->>'v' from jsonb_array_elements(o.headers) h
                                     where h->>'k' = 'ce_id') || ' ' || (select count(*) from kafka_records
                   where topic = '$T.dlq' and key = '$OF_TAG-k4')
            from outbox o where topic = '$T.dlq' and key = convert_to('$OF_TAG-k4', 'UTF8')
             and dead_at is null")"
check "... and went out only once the large one was dead" t \
    "$(sql "select (select published_at from outbox where topic = '$T.dlq' and dead_at is null
                    and key = convert_to('$OF_TAG-k4', 'UTF8'))
                 >= (select dead_at from outbox where topic = '$T.dlq' and dead_at is not null
                     and key = convert_to('$OF_TAG-k4', 'UTF8'))")"

# 6: the operator's second chance for the dead row of k1.
octl() { "$OF_ORDERCTL" outbox --database-url "$OF_URL" --topic-prefix "$OF_PREFIX" "$@"; }
dead_id=$(sql "select id from outbox where topic = '$T.dlq' and dead_at is not null
               and key = convert_to('$OF_TAG-k1', 'UTF8')")
listed=$(octl list --dead --topic order.created.dlq)
check "outbox list --dead shows the dead rows (of k1 and k4) and why" "1 2" \
    "$(grep -c -- "$dead_id" <<<"$listed") $(grep -ci 'too large' <<<"$listed")"
rc=0; octl retry 00000000-0000-4000-8000-0000000000ff >/dev/null 2>&1 || rc=$?
check "outbox retry of an unknown id: exit 66" 66 "$rc"
rc=0; err=$(octl retry "$dead_id" 2>&1 >/dev/null) || rc=$?
check "outbox retry refuses a row whose key had a younger row published: exit 65" \
    "65 1" "$rc $(grep -c 'younger rows of its key' <<<"$err")"
check "... and changes nothing" "1" \
    "$(sql "select count(*) from outbox where id = '$dead_id' and dead_at is not null")"
of_worker_stop oc3
of_worker_start oc2 order-created ORDERFLOW_HTTP_PORT=$((PORT + 1)) ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s
rc=0; octl retry --all --force --topic order.created.dlq >/dev/null || rc=$?
check "outbox retry --all --force: exit 0" 0 "$rc"
of_kafka_wait order.created.dlq "select count(*) = 2 from kafka_records
                                 where topic = '$T.dlq' and key = '$OF_TAG-k1'" 60 || true
check "the retried row went out, after the younger copy of its key" \
    "$OF_TAG-small,$OF_TAG-big" \
    "$(sql "select string_agg(headers->>'ce_id', ',' order by \"offset\") from kafka_records
            where topic = '$T.dlq' and key = '$OF_TAG-k1'")"
check "it is published, no longer dead" "t" \
    "$(sql "select published_at is not null and dead_at is null from outbox where id = '$dead_id'")"
of_finish
