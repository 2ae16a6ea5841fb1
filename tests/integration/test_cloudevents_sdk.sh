#!/usr/bin/env bash
# test_cloudevents_sdk.sh: orderflow with the official CloudEvents SDK for
# Python (cloudevents 1.x, its Kafka binding, with confluent-kafka), as an
# upstream team would use it (tests/integration/cloudevents_sdk.py).
#
#   1. order.created produced by the SDK in binary mode, in structured mode
#      (the SDK sends content-type application/json and no ce_ headers) and in
#      structured mode with data given as bytes (data_base64): three orders,
#      each CONFIRMED, no dead letter;
#   2. an order.status.update in the SDK's structured mode applies (PAID);
#   3. orderflow's own events on order.status parse with the SDK's
#      from_binary: attributes, subject = order id, key = order id, data.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

py="$ORDERFLOW_SOURCE_DIR/.cache/interop/venv/bin/python"
sdk=(env KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" "$py"
    "$ORDERFLOW_SOURCE_DIR/tests/integration/cloudevents_sdk.py")
if [ ! -x "$py" ]; then
    echo "not ok - the CloudEvents SDK venv is missing ($py): run ops/install-deps --test-tools"
    exit 1
fi

of_setup sdk
of_topics_create
sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values ('p-1', 'Bolt', 300, 100)"
of_worker_start oc order-created
of_worker_start os order-status

# 1. order.created in the SDK's three ways.
data='{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":2}],"currency":"EUR"}'
for mode in binary structured structured-bytes; do
    "${sdk[@]}" produce "${OF_PREFIX}order.created" "$mode" "$OF_TAG-$mode" order.created \
        "$OF_TAG-$mode" "$data" >>"$OF_WORK/sdk.log"
done
check_match_sdk() { [[ "$2" =~ $1 ]] && echo yes || echo "no: $2"; }
check "the SDK's structured mode goes out as the issue says: content-type application/json, no ce_ headers" yes \
    "$(check_match_sdk '"mode": "structured", "key": "[^"]+", "headers": \{"content-type": "application/json"\}' \
        "$(grep '"mode": "structured"' "$OF_WORK/sdk.log")")"
wait_for "select count(*) = 3 from orders where status = 'CONFIRMED' and source_event_id like '$OF_TAG-%'" 60 || true
check "three orders, each CONFIRMED, one per mode" \
    "$OF_TAG-binary CONFIRMED 600,$OF_TAG-structured CONFIRMED 600,$OF_TAG-structured-bytes CONFIRMED 600" \
    "$(sql "select string_agg(source_event_id || ' ' || status || ' ' || total_cents, ',' order by source_event_id)
            from orders where source_event_id like '$OF_TAG-%'")"
check "no dead letter" 0 "$(sql "select count(*) from dead_letters")"

# 2. An order.status.update in structured mode.
order=$(sql "select id from orders where source_event_id = '$OF_TAG-structured'")
"${sdk[@]}" produce "${OF_PREFIX}order.status" structured "$OF_TAG-paid" order.status.update "$order" \
    "{\"order_id\":\"$order\",\"status\":\"PAID\",\"expected_version\":3}" >>"$OF_WORK/sdk.log"
wait_for "select status = 'PAID' from orders where id = '$order'" 60 || true
check "the structured update applied: PAID at version 4" "PAID 4" \
    "$(sql "select status || ' ' || version from orders where id = '$order'")"

# 3. orderflow's events read with the SDK.
out=$("${sdk[@]}" consume "${OF_PREFIX}order.status" "$OF_TAG-reader" 11 60 2>>"$OF_WORK/sdk.log") || true
check "every record on order.status parses with the SDK" 0 "$(grep -c '"error"' <<<"$out" || true)"
check "orderflow's records are binary mode (from_binary); the one structured record is the SDK's update" \
    "binary:orderflow structured:sdk/python" \
    "$(jq -r '"\(.mode):\(.source | split("/")[0] | if . == "sdk" then "sdk/python" else . end)"' <<<"$out" | sort -u | tr '\n' ' ' | sed 's/ $//')"
check "the SDK reads the order's history: CREATED..CONFIRMED, then PAID" \
    "CREATED INVENTORY_RESERVED CONFIRMED PAID" \
    "$(jq -r --arg o "$order" 'select(.type == "order.status.changed" and .data.order_id == $o) | .data.status' <<<"$out" |
        tr '\n' ' ' | sed 's/ $//')"
check "with orderflow's attributes: source, subject and key the order id, the correlation id" \
    "orderflow/order-status $order $order $OF_TAG-structured" \
    "$(jq -r --arg o "$order" 'select(.type == "order.status.changed" and .data.order_id == $o and .data.status == "CONFIRMED") |
        "\(.source) \(.subject) \(.key) \(.data.correlation_id)"' <<<"$out")"
of_finish
