#!/usr/bin/env bash
# test_order_dlq.sh: poison events on the order topics end in dead_letters and
# on the .dlq topics, once, while the valid events around them go through.
#
# Nine kinds of bad order.created records (malformed JSON, a value over
# 64 KiB, a missing field, a wrong type, a quantity out of range, 101 items,
# a bad specversion, no ce_id header, an unknown ce_type) are published on
# one key (one partition), each followed by a valid order. Then bad
# order.status.update records (an unknown order, an unknown status). Last,
# order-created restarts under a new consumer group, rereads the topic from
# the beginning, and must neither add a dead letter nor publish a second DLQ
# copy (nor create an order twice).
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup dlq
of_topics_create
T_CREATED="${OF_PREFIX}order.created"
T_STATUS="${OF_PREFIX}order.status"
sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values ('p-1', 'Bolt', 300, 1000);
     create table expected_dead (seq integer primary key, error_code text not null, ce_id text,
                                 md5 text not null)"

of_worker_start oc order-created
of_worker_start os order-status

key="$OF_TAG-k"
good='{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":1}]}'
n_valid=0
n_bad=0
valid() { # the next valid order, on the shared key
    of_publish order.created "$key" "$OF_TAG-v-$n_valid" order.created "$good"
    n_valid=$((n_valid + 1))
}
headers() { # headers <ce_id> [ce_type] [specversion]: binary-mode headers into H
    H=(-H "ce_specversion=${3:-1.0}" -H "ce_id=$1" -H "ce_type=${2:-order.created}"
        -H "ce_source=test/$OF_NAME" -H "ce_time=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        -H content-type=application/json)
}
bad() { # bad <error code> <ce_id recorded, or ""> <value> [kcat args...]
    local code=$1 id=$2 value=$3
    shift 3
    of_publish_raw order.created "$key" "$value" "$@"
    n_bad=$((n_bad + 1))
    sql "insert into expected_dead values ($n_bad, '$code', nullif('$id', ''),
         '$(printf '%s' "$value" | md5sum | cut -d' ' -f1)')"
}

valid
headers "$OF_TAG-b-1"
bad MALFORMED_JSON "" '{"customer_id":"c-1","items":[' "${H[@]}"
valid
headers "$OF_TAG-b-2"
pad=$(head -c 70000 /dev/zero | tr '\0' x)
bad VALUE_TOO_LARGE "" "{\"customer_id\":\"c-1\",\"items\":[{\"product_id\":\"p-1\",\"quantity\":1}],\"pad\":\"$pad\"}" "${H[@]}"
valid
headers "$OF_TAG-b-3"
bad MISSING_FIELD "$OF_TAG-b-3" '{"items":[{"product_id":"p-1","quantity":1}]}' "${H[@]}"
valid
headers "$OF_TAG-b-4"
bad WRONG_TYPE "$OF_TAG-b-4" '{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":"3"}]}' "${H[@]}"
valid
headers "$OF_TAG-b-5"
bad OUT_OF_RANGE "$OF_TAG-b-5" '{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":0}]}' "${H[@]}"
valid
headers "$OF_TAG-b-6"
items=
for ((i = 0; i < 101; i++)); do items+="${items:+,}{\"product_id\":\"p-1\",\"quantity\":1}"; done
bad TOO_MANY_ITEMS "$OF_TAG-b-6" "{\"customer_id\":\"c-1\",\"items\":[$items]}" "${H[@]}"
valid
headers "$OF_TAG-b-7" order.created 0.3
bad UNSUPPORTED_SPECVERSION "" "$good" "${H[@]}"
valid
# No ce_id header at all.
bad MISSING_ATTRIBUTE "" "$good" -H ce_specversion=1.0 -H ce_type=order.created \
    -H "ce_source=test/$OF_NAME" -H content-type=application/json
valid
headers "$OF_TAG-b-9" order.deleted
bad UNKNOWN_TYPE "$OF_TAG-b-9" "$good" "${H[@]}"
valid

wait_for "select count(*) = $n_valid and bool_and(status = 'CONFIRMED') from orders" 120 || true
wait_for "select count(*) = $n_bad from dead_letters" 120 || true
wait_for "select count(*) = count(published_at) from outbox" 120 || true
of_kafka_wait order.created.dlq "select count(*) >= $n_bad from kafka_records where topic = '$T_CREATED.dlq'" 60 || true
of_kafka_load order.created >/dev/null

check "every valid order behind a poison record is CONFIRMED" "10 10" \
    "$(sql "select count(*) || ' ' || count(*) filter (where status = 'CONFIRMED' and version = 3) from orders")"
check "the test's records share one partition" 1 \
    "$(sql "select count(distinct partition) from kafka_records where topic = '$T_CREATED'")"
DL="from dead_letters d where d.topic = '$T_CREATED'"
check "each poison record dead-lettered once, with the worker's error code, in order" \
    "$(sql "select string_agg(error_code, ',' order by seq) from expected_dead")" \
    "$(sql "select string_agg(d.error_code, ',' order by d.\"offset\") $DL")"
check "dead letters: worker, source topic, non-empty reason, key" "$n_bad" \
    "$(sql "select count(*) $DL and d.worker = 'order-created' and length(d.reason) > 0
            and convert_from(d.key, 'UTF8') = '$key'")"
check "dead letters keep the original bytes" \
    "$(sql "select string_agg(md5, ',' order by seq) from expected_dead")" \
    "$(sql "select string_agg(md5(d.payload), ',' order by d.\"offset\") $DL")"
check "dead letters keep the original headers" "$n_bad" \
    "$(sql "select count(*) $DL and d.headers @> '[{\"k\": \"content-type\", \"v\": \"application/json\"}]'
            and d.headers @> '[{\"k\": \"ce_source\", \"v\": \"test/$OF_NAME\"}]'")"
check "dead letters name the ce_id when the envelope could be read" \
    "$(sql "select string_agg(ce_id, ',' order by seq) from expected_dead where ce_id is not null")" \
    "$(sql "select string_agg(d.ce_id, ',' order by d.\"offset\") $DL
            and d.error_code in (select error_code from expected_dead where ce_id is not null)")"
check "dead letters sit at the poison records' positions" "$n_bad" \
    "$(sql "select count(*) from dead_letters d join kafka_records k on k.topic = d.topic
            and k.partition = d.partition and k.\"offset\" = d.\"offset\"
            where d.topic = '$T_CREATED' and md5(k.value) = md5(d.payload)")"
# The worker's log line for each dead letter: partition, offset, "CODE: reason".
logged=$(jq -R -r --arg t "$T_CREATED" 'fromjson? | select(.topic == $t and (.msg | startswith("event dead-lettered: ")))
                                       | "\(.partition):\(.offset):\(.msg | ltrimstr("event dead-lettered: "))"' \
    "$OF_WORK/oc.log" | sort -t: -k2,2n | paste -sd'|')
check "error code and reason are the ones the worker logged" \
    "$(sql "select string_agg(d.partition || ':' || d.\"offset\" || ':' || d.error_code || ': ' || d.reason, '|'
            order by d.\"offset\") $DL")" "$logged"
check "order.created.dlq holds one copy per poison record" "$n_bad" \
    "$(sql "select count(*) from kafka_records where topic = '$T_CREATED.dlq'")"
check "DLQ copies: dlq_* headers match the dead letter, original value, key and headers" "$n_bad" \
    "$(sql "select count(*) from dead_letters d join kafka_records k on k.topic = '$T_CREATED.dlq'
              and k.headers->>'dlq_partition' = d.partition::text and k.headers->>'dlq_offset' = d.\"offset\"::text
            where d.topic = '$T_CREATED' and k.headers->>'dlq_topic' = '$T_CREATED' and k.headers->>'dlq_worker' = 'order-created'
              and k.headers->>'dlq_error_code' = d.error_code and k.headers->>'dlq_reason' = d.reason
              and length(k.headers->>'dlq_reason') > 0 and md5(k.value) = md5(d.payload) and k.key = '$key'
              and k.headers->>'content-type' = 'application/json'
              and k.headers->>'ce_source' = 'test/$OF_NAME'")"
check "the unknown ce_type is kept on its DLQ copy" "order.deleted" \
    "$(sql "select k.headers->>'ce_type' from kafka_records k where k.topic = '$T_CREATED.dlq'
            and k.headers->>'dlq_error_code' = 'UNKNOWN_TYPE'")"

# --- order.status.update that cannot apply -------------------------------------------------------
v0=$(sql "select id from orders where correlation_id = '$OF_TAG-v-0'")
ghost=$(cat /proc/sys/kernel/random/uuid)
of_publish order.status "$ghost" "$OF_TAG-s-1" order.status.update "{\"order_id\":\"$ghost\",\"status\":\"PAID\"}"
of_publish order.status "$ghost" "$OF_TAG-s-2" order.status.update "{\"order_id\":\"$v0\",\"status\":\"LOST\"}"
of_publish order.status "$ghost" "$OF_TAG-s-3" order.status.update "{\"order_id\":\"$v0\",\"status\":\"PAID\"}"
wait_for "select status = 'PAID' from orders where id = '$v0'" 120 || true
wait_for "select count(*) = 2 from dead_letters where topic = '$T_STATUS'" 60 || true
wait_for "select count(*) = count(published_at) from outbox" 60 || true
of_kafka_wait order.status.dlq "select count(*) >= 2 from kafka_records where topic = '$T_STATUS.dlq'" 60 || true
check "the valid update behind them applied" "PAID 4" "$(sql "select status || ' ' || version from orders where id = '$v0'")"
check "unknown order and unknown status dead-lettered by order-status" \
    "UNKNOWN_ORDER:$OF_TAG-s-1,INVALID_STATUS:$OF_TAG-s-2" \
    "$(sql "select string_agg(error_code || ':' || ce_id, ',' order by \"offset\") from dead_letters
            where topic = '$T_STATUS' and worker = 'order-status' and length(reason) > 0")"
check "order.status.dlq copies carry the dlq_* headers" "UNKNOWN_ORDER,INVALID_STATUS" \
    "$(sql "select string_agg(k.headers->>'dlq_error_code', ',' order by k.\"offset\") from kafka_records k
            join dead_letters d on d.topic = k.headers->>'dlq_topic' and d.partition::text = k.headers->>'dlq_partition'
              and d.\"offset\"::text = k.headers->>'dlq_offset'
            where k.topic = '$T_STATUS.dlq' and k.headers->>'dlq_worker' = 'order-status'
              and k.headers->>'dlq_topic' = '$T_STATUS' and k.headers->>'dlq_reason' = d.reason
              and k.value = convert_from(d.payload, 'UTF8') and k.key = '$ghost'")"
check "the unknown order changed nothing" "0 0" \
    "$(sql "select (select count(*) from orders where id = '$ghost') || ' ' ||
                   (select count(*) from executions where order_id = '$ghost')")"

# --- The same records again, under a new consumer group ------------------------------------------
of_worker_stop oc
of_worker_start oc2 order-created ORDERFLOW_GROUP_ID="$OF_TAG-order-created-again"
# A sentinel behind everything on the key: once it is CONFIRMED, the whole
# partition has been reread.
valid
wait_for "select count(*) = $n_valid and bool_and(status in ('CONFIRMED', 'PAID')) from orders" 120 || true
wait_for "select count(*) = count(published_at) from outbox" 60 || true
of_kafka_load order.created.dlq >/dev/null
check "reread: the sentinel order is CONFIRMED, no order twice" "11 11 11" \
    "$(sql "select count(*) || ' ' || count(distinct correlation_id) || ' ' ||
                   count(*) filter (where status = 'CONFIRMED' or status = 'PAID') from orders")"
check "reread: no second dead_letters row" "$n_bad $n_bad" \
    "$(sql "select count(*) || ' ' || count(distinct \"offset\") $DL")"
check "reread: no second DLQ copy queued or published" "$n_bad $n_bad" \
    "$(sql "select count(*) from outbox where topic = '$T_CREATED.dlq'") $(sql "select count(*) from kafka_records where topic = '$T_CREATED.dlq'")"
check "reread: the restarted worker saw every record again" "$((n_valid - 1)) $n_bad" \
    "$(jq -R -r --arg t "$T_CREATED" 'fromjson? | select(.topic == $t) | .msg' "$OF_WORK/oc2.log" |
        awk '/^duplicate event skipped/ {d++} /^event dead-lettered: / {x++} END {print d + 0, x + 0}')"
check "inbox: one row per valid ce_id" "$n_valid" \
    "$(sql "select count(*) from inbox where consumer = 'order-created'")"
of_finish
