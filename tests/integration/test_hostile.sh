#!/usr/bin/env bash
# test_hostile.sh: every record ends (applied, a no-op, or a dead letter), whatever its bytes.
#
# Records with bytes that are no text (NUL, invalid UTF-8) in the key, a
# header name, a header value and the payload are published on one partition
# of order.created, each followed by a valid order; so are orders whose
# total is at and just past the contract's money limit (10^15 - 1 cents).
# Each bad record must end as a dead letter that keeps its original bytes,
# with a DLQ copy, and every valid order behind it must be created, with no
# transaction retried: nothing stalls the partition. Records are produced by
# hostile_produce, which takes every part as hex.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup hostile
of_topics_create
T="${OF_PREFIX}order.created"
sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values ('p-1', 'Bolt', 300, 1000),
         ('p-max', 'Everything', 999999999999999, 10)"
PORT=$((28200 + $$ % 500))
of_worker_start oc order-created ORDERFLOW_HTTP_PORT=$PORT

hex() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }
# Binary-mode CloudEvent headers for ce_id $1 (hex fields for hostile_produce).
ce_headers() {
    printf 'h=%s:%s ' "$(hex ce_specversion)" "$(hex 1.0)" "$(hex ce_id)" "$(hex "$1")" \
        "$(hex ce_type)" "$(hex order.created)" "$(hex ce_source)" "$(hex "test/$OF_NAME")" \
        "$(hex content-type)" "$(hex application/json)"
}
order() { printf '{"customer_id":"c-1","items":[{"product_id":"%s","quantity":%s}]}' "$1" "$2"; }
records=$OF_WORK/records
: >"$records"
n_valid=0
valid() { # the next valid order
    printf 'k=%s v=%s %s\n' "$(hex key-1)" "$(hex "$(order p-1 1)")" "$(ce_headers "$OF_TAG-v-$n_valid")" >>"$records"
    n_valid=$((n_valid + 1))
}

valid
# 1. The key: NUL and invalid UTF-8, on a malformed value.
printf 'k=ff00fe6b v=%s %s\n' "$(hex '{"customer_id"')" "$(ce_headers "$OF_TAG-b-key")" >>"$records"
valid
# 2. A header name that is no text (and a value that is malformed JSON).
printf 'k=%s v=%s %s h=782dfffe:%s\n' "$(hex key-1)" "$(hex '{"customer_id"')" \
    "$(ce_headers "$OF_TAG-b-name")" "$(hex v)" >>"$records"
valid
# 3. A header value with a NUL and an invalid byte: ce_id "id\0\xff".
printf 'k=%s v=%s h=%s:%s h=%s:%s h=%s:69640Aff00ff h=%s:%s h=%s:%s h=%s:%s\n' "$(hex key-1)" \
    "$(hex "$(order p-1 1)")" "$(hex ce_specversion)" "$(hex 1.0)" "$(hex ce_type)" \
    "$(hex order.created)" "$(hex ce_id)" "$(hex ce_source)" "$(hex test)" "$(hex content-type)" \
    "$(hex application/json)" "$(hex x-trace)" "$(hex t)" >>"$records"
valid
# 4. The payload: NUL and invalid UTF-8.
printf 'k=%s v=00ff7b %s\n' "$(hex key-1)" "$(ce_headers "$OF_TAG-b-payload")" >>"$records"
valid
# 5. A valid order that carries an extra header whose name is no text: applied.
printf 'k=%s v=%s %s h=782dff:%s\n' "$(hex key-1)" "$(hex "$(order p-1 1)")" \
    "$(ce_headers "$OF_TAG-ok-name")" "$(hex v)" >>"$records"
valid
# 6. Money: a total at the contract's limit is created; one cent per unit
#    more (two units) is past it and dead-lettered.
printf 'k=%s v=%s %s\n' "$(hex key-1)" "$(hex "$(order p-max 1)")" "$(ce_headers "$OF_TAG-at-limit")" >>"$records"
printf 'k=%s v=%s %s\n' "$(hex key-1)" "$(hex "$(order p-max 2)")" "$(ce_headers "$OF_TAG-b-amount")" >>"$records"
valid

"$ORDERFLOW_BUILD_DIR/tests/integration/hostile_produce" "$KAFKA_BOOTSTRAP_SERVERS" "$T" 0 <"$records"

n_dead=5
wait_for "select count(*) = $n_valid from orders where correlation_id like '$OF_TAG-v-%'" 60 || of_log_tails
wait_for "select count(*) = $n_dead from dead_letters" 60 || true
wait_for "select count(*) = count(published_at) from outbox" 60 || true

check "every valid order behind a hostile record was created" "$n_valid" \
    "$(sql "select count(*) from orders where correlation_id like '$OF_TAG-v-%' and status = 'CREATED'")"
check "each hostile record ended as one dead letter" "$n_dead" "$(sql "select count(*) from dead_letters where topic = '$T'")"
check "the key is kept byte for byte" '\xff00fe6b' \
    "$(sql "select key from dead_letters where ce_id is null and error_code = 'MALFORMED_JSON' and key = '\\xff00fe6b'::bytea")"
check "a header name that is no text is kept in base64" 1 \
    "$(sql "select count(*) from dead_letters where headers @> '[{\"kb64\": \"eC3//g==\", \"v\": \"v\"}]'")"
check "a header value with NUL and invalid bytes is kept in base64, with its reason" "INVALID_ATTRIBUTE 1" \
    "$(sql "select error_code || ' ' || count(*) from dead_letters
            where headers @> '[{\"k\": \"ce_id\", \"b64\": \"aWQK/wD/\"}]' group by error_code")"
check "the payload is kept byte for byte" '\x00ff7b' \
    "$(sql "select payload from dead_letters where payload = '\\x00ff7b'::bytea")"
check "a valid order with a hostile extra header was applied" "CREATED" \
    "$(sql "select status from orders where correlation_id = '$OF_TAG-ok-name'")"
check "a total at the money limit is created" "CREATED 999999999999999" \
    "$(sql "select status || ' ' || total_cents from orders where correlation_id = '$OF_TAG-at-limit'")"
check "a total past the money limit is dead-lettered, not retried" \
    "PROCESSING_FAILED|step \"CreateOrder\" of the order machine failed: value outside the contract's limits" \
    "$(sql "select error_code || '|' || reason from dead_letters where ce_id = '$OF_TAG-b-amount'")"
check "no order for the amount past the limit" 0 \
    "$(sql "select count(*) from orders where correlation_id = '$OF_TAG-b-amount'")"
check "every dead letter's text is storable: reasons say what failed" "$n_dead" \
    "$(sql "select count(*) from dead_letters where length(reason) > 0")"
# kcat's JSON output would carry the hostile bytes raw: count and size the
# copies (the topic is this test's own) from their value sizes instead.
dlq_copies() {
    timeout 60 kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$T.dlq" -o beginning -e -q -f '%S\n' || true
}
for _ in $(seq 60); do [ "$(dlq_copies | wc -l)" -ge "$n_dead" ] && break; sleep 1; done
check "one DLQ copy per dead letter" "$n_dead" "$(dlq_copies | wc -l)"
check "the DLQ copies keep the original value sizes" \
    "$(sql "select string_agg(length(payload)::text, ',' order by length(payload)) from dead_letters")" \
    "$(dlq_copies | awk '{print $1}' | sort -n | paste -sd,)"
check "no transaction was retried: nothing blocked the partition" 0 \
    "$(grep -c 'failed, retrying' "$OF_WORK/oc.log" || true)"
check "the worker is ready at the end" "ready" "$(curl -fsS "http://127.0.0.1:$PORT/readyz" || true)"
check "the worker counted its dead letters" "$n_dead" \
    "$(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^orderflow_events_dead_lettered_total/ {n += $2} END {print n + 0}')"
of_finish
