#!/usr/bin/env bash
# test_dlq_identity.sh: a dead letter is one record at one position.
#
# The order.created topic is "recreated": dead letters of an earlier topic of
# the same name sit at offset 0 of every partition. A new bad record lands at
# offset 0 of one partition: it must get its own dead letter and DLQ copy, not
# be taken for the old one (which once left no dead letter while its offset was
# committed). Then order-created rereads the topic from the start under a new
# group: the same bad record is the same dead letter, so nothing is added.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup dlqid
of_topics_create
T="${OF_PREFIX}order.created"
sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values ('p-1', 'Bolt', 300, 100);
     insert into dead_letters (worker, topic, partition, \"offset\", key, payload, error_code, reason)
         select 'order-created', '$T', p, 0, convert_to('old-key', 'UTF8'),
                convert_to('{\"old\":', 'UTF8'), 'MALFORMED_JSON', 'a record of the topic before'
         from generate_series(0, 5) p"

key="$OF_TAG-k"
of_worker_start oc order-created
of_publish_raw order.created "$key" '{"customer_id":"c-1","items":[' -H ce_specversion=1.0 \
    -H "ce_id=$OF_TAG-bad" -H ce_type=order.created -H "ce_source=test/$OF_NAME" \
    -H "ce_time=$(date -u +%Y-%m-%dT%H:%M:%SZ)" -H content-type=application/json
of_publish order.created "$key" "$OF_TAG-good" order.created \
    '{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":1}]}'
wait_for "select count(*) = 1 from orders where correlation_id = '$OF_TAG-good'" 60 || true
check "the new bad record at a reused offset has its own dead letter" "1 MALFORMED_JSON 0" \
    "$(sql "select count(*) || ' ' || min(error_code) || ' ' || min(\"offset\") from dead_letters
            where topic = '$T' and key = convert_to('$key', 'UTF8')")"
check "beside the old one at the same position" 2 \
    "$(sql "select count(*) from dead_letters d where topic = '$T' and \"offset\" = 0
            and partition = (select partition from dead_letters
                             where topic = '$T' and key = convert_to('$key', 'UTF8'))")"
of_kafka_wait order.created.dlq "select count(*) = 1 from kafka_records where topic = '$T.dlq'" 60 || true
check "and one DLQ copy" 1 "$(sql "select count(*) from kafka_records where topic = '$T.dlq'")"
of_worker_stop oc

# Rereading from the start: the same record is the same dead letter.
of_worker_start oc2 order-created ORDERFLOW_GROUP_ID="$OF_TAG-again"
of_publish order.created "$key" "$OF_TAG-good2" order.created \
    '{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":1}]}'
wait_for "select count(*) = 1 from orders where correlation_id = '$OF_TAG-good2'" 60 || true
check "a redelivered bad record adds no dead letter" 7 "$(sql "select count(*) from dead_letters")"
of_kafka_load order.created.dlq >/dev/null
check "and no second DLQ copy" 1 "$(sql "select count(*) from kafka_records where topic = '$T.dlq'")"
check "the first order was not created twice" 1 \
    "$(sql "select count(*) from orders where correlation_id = '$OF_TAG-good'")"
of_finish
