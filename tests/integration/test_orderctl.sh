#!/usr/bin/env bash
# test_orderctl.sh: the operator CLI against the real stack and the three real workers.
#
# In its own database and topic prefix: submit an order (CONFIRMED), describe
# and history show it, update it PAID/SHIPPED/DELIVERED, return one item
# (REFUND_COMPLETED, order PARTIALLY_RETURNED); malformed records are listed
# and shown by `dlq`; an update dead-lettered by a fault that is then fixed
# (a bad check constraint, PROCESSING_FAILED) is redriven and applies; the
# same dead letter named again is skipped, and redriven --again, its ce_id
# having taken effect, changes nothing; redrive by predicate (--where) sends
# exactly what its dry run listed, is recorded as a run (dlq history) and,
# repeated, sends nothing; graphs render with Graphviz; exit codes for bad usage (64), invalid
# input (65), unknown order or dead letter (66) and an unreachable server (69).
set -euo pipefail

: "${ORDERFLOW_BUILD_DIR:?set by ctest}" "${ORDERFLOW_SOURCE_DIR:?set by ctest}"
: "${KAFKA_BOOTSTRAP_SERVERS:?}" "${PGPORT:?}"
orderctl=$ORDERFLOW_BUILD_DIR/tools/orderctl/orderctl
tag="oc$$x$(date +%s)"
db="of_${tag}"
url="postgresql://orderflow@127.0.0.1:${PGPORT}/${db}"
prefix="${tag}."
work=$(mktemp -d)
workers=(order-created order-status return-requested)
declare -A pid=()

# orderctl and the workers read these.
export DATABASE_URL=$url ORDERFLOW_TOPIC_PREFIX=$prefix

cleanup() {
    local w
    for w in "${!pid[@]}"; do
        kill -KILL "${pid[$w]}" 2>/dev/null || true
    done
    dropdb --if-exists "$db" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
# set -e stops at the first unexpected failure; say where.
trap 'echo "not ok - line $LINENO: unexpected failure of: $BASH_COMMAND"' ERR

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
check_match() { # check_match <description> <extended regex> <actual>
    if [[ "$3" =~ $2 ]]; then
        passed=$((passed + 1))
        echo "ok - $1"
    else
        failed=$((failed + 1))
        echo "not ok - $1: '$3' does not match /$2/"
    fi
}
rc_of() { # rc_of <command...>: its exit code, output discarded
    local rc=0
    "$@" >"$work/last.out" 2>"$work/last.err" || rc=$?
    echo "$rc"
}
sql() { psql "$url" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
wait_for() { # wait_for <sql returning t> <seconds>
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        [ "$(sql "$1")" = t ] && return 0
        sleep 0.1
    done
    echo "# timed out waiting for: $1"
    return 1
}
records() { # records <topic without prefix>: number of records on it
    kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$prefix$1" -o beginning -e -q -f 'x\n' 2>/dev/null |
        grep -c x || true
}

createdb "$db"
"$orderctl" migrate up --dir "$ORDERFLOW_SOURCE_DIR/migrations" >/dev/null
sql "insert into customers (id, name) values ('c1', 'Ada');
     insert into products (id, name, price_cents, stock) values
       ('pen', 'Pen', 250, 100), ('ink', 'Ink', 1000, 100)"
"$orderctl" topics create --topic-prefix "$prefix" --partitions 3 >/dev/null

for w in "${workers[@]}"; do
    ORDERFLOW_GROUP_ID="$tag-$w" ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s ORDERFLOW_HTTP_PORT=0 LOG_LEVEL=debug \
        "$ORDERFLOW_BUILD_DIR/workers/$w/orderflow-$w" >"$work/$w.log" 2>&1 &
    pid[$w]=$!
done

# 1. Bad usage and invalid input are refused before anything is sent.
check "no arguments: usage (64)" 64 "$(rc_of "$orderctl" describe)"
check "unknown flag: usage (64)" 64 "$(rc_of "$orderctl" history --bogus x)"
check "submit without items: usage (64)" 64 "$(rc_of "$orderctl" submit --customer c1)"
check "unknown dlq action: usage (64)" 64 "$(rc_of "$orderctl" dlq purge)"
check "redrive with ids and --topic: usage (64)" 64 "$(rc_of "$orderctl" dlq redrive 1 --topic order.status)"
check "unknown machine for graph: usage (64)" 64 "$(rc_of "$orderctl" graph nope)"
check "item without quantity: invalid input (65)" 65 "$(rc_of "$orderctl" submit --customer c1 --item pen)"
check "quantity 0, rejected by the worker's decoder: 65" 65 "$(rc_of "$orderctl" submit --customer c1 --item pen:0)"
check_match "the decoder's reason is shown" 'items\[0\]\.quantity' "$(cat "$work/last.err")"
check "update to a status upstream may not send: 65" 65 \
    "$(rc_of "$orderctl" update 01234567-89ab-7def-8123-456789abcdef CONFIRMED)"
check "executions --machine outside the set: 65" 65 "$(rc_of "$orderctl" executions --machine Foo)"
check "executions --since that is neither time nor duration: 65" 65 \
    "$(rc_of "$orderctl" executions --since yesterday)"
check "malformed order.created records: none published by the refused commands" 0 "$(records order.created)"

# 2. Unknown orders and dead letters: 66.
check "describe an unknown order: 66" 66 "$(rc_of "$orderctl" describe 01234567-89ab-7def-8123-456789abcdef)"
check_match "describe names the unknown order" 'order "01234567-89ab-7def-8123-456789abcdef" not found' \
    "$(cat "$work/last.err")"
check "history of an unknown order: 66" 66 "$(rc_of "$orderctl" history no-such-ce-id)"
check "update --wait of an unknown order: 66" 66 \
    "$(rc_of "$orderctl" update 01234567-89ab-7def-8123-456789abcdef PAID --wait 5s)"
check "dlq show of an unknown dead letter: 66" 66 "$(rc_of "$orderctl" dlq show 987654321)"
check "dlq redrive of an unknown dead letter: 66" 66 "$(rc_of "$orderctl" dlq redrive 987654321)"
check "nothing reached order.status" 0 "$(records order.status)"

# 3. Unreachable servers: 69.
check "PostgreSQL unreachable: 69" 69 \
    "$(rc_of "$orderctl" describe 01234567-89ab-7def-8123-456789abcdef --database-url postgresql://x@127.0.0.1:1/x)"
check "Kafka unreachable (delivery times out): 69" 69 \
    "$(rc_of "$orderctl" submit --customer c1 --item pen:1 --kafka-bootstrap-servers 127.0.0.1:1 --timeout 2s)"

# 4. submit: order.created keyed by its ce_id, from "orderctl"; the workers confirm it.
out=$("$orderctl" submit --customer c1 --item pen:2 --item ink:1 --currency EUR --wait 90s --json) ||
    { echo "$out"; tail -n 30 "$work/order-created.log" "$work/order-status.log"; }
ce=$(jq -r .ce_id <<<"$out")
order=$(jq -r .outcome.order_id <<<"$out")
check "submit --wait: CONFIRMED" CONFIRMED "$(jq -r .outcome.status <<<"$out")"
check "the order row has that ce_id as its source" "$order" \
    "$(sql "select id from orders where source_event_id = '$ce'")"
check "the record is keyed by its ce_id, binary mode, ce_source orderctl" 1 \
    "$(kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "${prefix}order.created" -o beginning -e -q -f '%k|%h\n' |
        grep "^$ce|" | grep "ce_id=$ce" | grep 'ce_source=orderctl' | grep -c 'ce_type=order.created' || true)"
check "partition and offset reported" "$(jq -r .partition <<<"$out")" \
    "$(sql "select partition from inbox where ce_id = '$ce'")"
printf '{"customer_id":"c1","items":[{"product_id":"ink","quantity":2}]}' >"$work/order.json"
"$orderctl" submit --file "$work/order.json" --wait 90s >"$work/submit2.out" || true
check_match "submit --file prints the ce_id, then the order" \
    '^[0-9a-f-]{36}'$'\n''order [0-9a-f-]{36} CONFIRMED$' "$(cat "$work/submit2.out")"

# 5. describe and history.
d=$("$orderctl" describe "$order" --json)
check "describe: status and version" "CONFIRMED 3" "$(jq -r '"\(.status) \(.version)"' <<<"$d")"
check "describe: customer, currency, total" "c1 EUR 1500" \
    "$(jq -r '"\(.customer_id) \(.currency) \(.total_cents)"' <<<"$d")"
check "describe: items with the price snapshot" "pen:2@250 ink:1@1000" \
    "$(jq -r '[.items[] | "\(.product_id):\(.quantity)@\(.unit_price_cents)"] | join(" ")' <<<"$d")"
check "describe: executions" "OrderProcess SUCCEEDED,OrderUpdate RUNNING" \
    "$(jq -r '[.executions[] | "\(.machine) \(.status)"] | join(",")' <<<"$d")"
check "describe by the order.created ce_id finds the same order" "$order" \
    "$("$orderctl" describe "$ce" --json | jq -r .order_id)"
check_match "describe text shows status and version" 'status +CONFIRMED \(version 3\)' \
    "$("$orderctl" describe "$order")"
h=$("$orderctl" history "$order" --json)
check "history: OrderProcess steps, then OrderUpdate starts" \
    "CreateOrder,UpdateInventory,OrderCompleted,Start" "$(jq -r '[.[].step] | join(",")' <<<"$h")"
check "history: first step caused by the submitted event" "$ce ${prefix}order.created" \
    "$(jq -r '.[0] | "\(.ce_id) \(.topic)"' <<<"$h")"
check "history: transitions" "null->CREATED CREATED->INVENTORY_RESERVED" \
    "$(jq -r '[.[0:2][] | "\(.from_state)->\(.to_state)"] | join(" ")' <<<"$h")"
check_match "history text: time, machine, step, transition, caused by" \
    'OrderProcess +UpdateInventory +CREATED -> INVENTORY_RESERVED +applied +'"${prefix//./\\.}"'order\.status/[0-9]+@[0-9]+' \
    "$("$orderctl" history "$order")"

# 6. A fault dead-letters PAID: a check constraint standing in for a bad
#    migration makes the update's transaction fail (PROCESSING_FAILED).
sql "alter table orders add constraint oc_test_no_paid check (status <> 'PAID') not valid"
rc=0
"$orderctl" update "$order" PAID --reason "card ok" --wait 60s >"$work/paid.out" || rc=$?
check "update --wait of a dead-lettered update: 65" 65 "$rc"
paid_ce=$(head -n 1 "$work/paid.out")
dl=$(sql "select id from dead_letters where ce_id = '$paid_ce'")
check_match "update --wait names the dead letter" "dead letter $dl: PROCESSING_FAILED" "$(cat "$work/paid.out")"
check "order still CONFIRMED at version 3" "CONFIRMED 3" "$(sql "select status || ' ' || version from orders where id = '$order'")"
l=$("$orderctl" dlq list --topic order.status --json)
check "dlq list --topic (without the prefix) shows it" "$dl PROCESSING_FAILED $paid_ce" \
    "$(jq -r '.[] | "\(.id) \(.error_code) \(.ce_id)"' <<<"$l")"
s=$("$orderctl" dlq show "$dl" --json)
check "dlq show: key is the order id, payload as text" "$order text PAID" \
    "$(jq -r '"\(.key) \(.payload_encoding) \(.payload | fromjson | .status)"' <<<"$s")"
check "dlq show: original headers" "$paid_ce orderctl" \
    "$(jq -r '[.headers[] | select(.k == "ce_id" or .k == "ce_source") | .v] | join(" ")' <<<"$s")"
check_match "dlq show text" "error_code +PROCESSING_FAILED" "$("$orderctl" dlq show "$dl")"

# 7. Dry run: prints the original record, sends and records nothing.
before=$(records order.status)
dry=$("$orderctl" dlq redrive "$dl" --dry-run)
check_match "dry run shows what it would send" "would redrive dead letter $dl to ${prefix//./\\.}order\.status \(ce_id $paid_ce" "$dry"
check "dry run sent nothing" "$before" "$(records order.status)"
check "dry run recorded nothing" "0 0" "$(sql "select redrive_count || ' ' || (select count(*) from redrives) from dead_letters where id = $dl")"

# 8. The fault is fixed; the redriven record applies.
sql "alter table orders drop constraint oc_test_no_paid"
out=$("$orderctl" dlq redrive "$dl" --note "constraint fixed")
check_match "redrive reports where the record went" "redrove dead letter $dl \(ce_id $paid_ce\) to ${prefix//./\\.}order\.status" "$out"
pos=$(sql "select partition || ' ' || \"offset\" from redrives where dead_letter_id = $dl")
check "the record at the recorded position is the original (key, ce_id, ce_source)" "$order|$paid_ce|orderctl" \
    "$(kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "${prefix}order.status" -p "${pos% *}" -o "${pos#* }" -c 1 -e -q \
        -f '%k|%h\n' | sed -E 's/^([^|]*)\|.*ce_id=([^,]*).*ce_source=([^,]*).*/\1|\2|\3/')"
wait_for "select status = 'PAID' from orders where id = '$order'" 60 || tail -n 30 "$work/order-status.log"
check "redriven update applied: PAID at version 4" "PAID 4" "$(sql "select status || ' ' || version from orders where id = '$order'")"
check "redrive recorded: count, time, note" "1 true 1 constraint fixed" \
    "$(sql "select d.redrive_count || ' ' || (d.redriven_at is not null) || ' ' || count(r.*) || ' ' || max(r.note)
            from dead_letters d join redrives r on r.dead_letter_id = d.id where d.id = $dl group by d.id")"
check "dlq show: the redrive was processed" processed \
    "$("$orderctl" dlq show "$dl" --json | jq -r '.redrives[0].outcome')"

# 9. Redriven again: without --again nothing is sent (a repeated command does
#    nothing twice); with it, the ce_id already took effect, so the inbox drops
#    it. The SHIPPED update behind it on the same key (one partition) proves it
#    was consumed.
out=$("$orderctl" dlq redrive "$dl")
check_match "redrive of a redriven id: skipped, says why" "dead letter $dl was redriven before \(redriven 1 time\(s\)" "$out"
check "and sent nothing, recorded no run" "1 1" \
    "$(sql "select redrive_count || ' ' || (select count(*) from redrive_runs) from dead_letters where id = $dl")"
"$orderctl" dlq redrive "$dl" --again >/dev/null
check "redrive --again: second record sent" "2" "$(sql "select redrive_count from dead_letters where id = $dl")"
rc=0
"$orderctl" update "$order" SHIPPED --wait 60s >"$work/shipped.out" || rc=$?
check "SHIPPED applied behind the repeat" 0 "$rc"
check_match "update --wait prints the transition" 'applied: PAID -> SHIPPED \(order version 5\)' "$(cat "$work/shipped.out")"
check "the repeat did not apply twice: one history row for its ce_id" 1 \
    "$(sql "select count(*) from execution_history where event_id = '$paid_ce'")"
check "order version counts PAID once" "SHIPPED 5" "$(sql "select status || ' ' || version from orders where id = '$order'")"
check "one inbox row for the ce_id" 1 "$(sql "select count(*) from inbox where ce_id = '$paid_ce'")"
check_match "the worker logged the repeat as a duplicate" . \
    "$(grep "$paid_ce" "$work/order-status.log" | grep 'duplicate event skipped' || true)"
check "dlq show: the second redrive had no effect" "no effect" \
    "$("$orderctl" dlq show "$dl" --json | jq -r '.redrives[1].outcome' | cut -c1-9)"

# 10. DELIVERED; an update the machine refuses is reported as rejected (65).
check "DELIVERED applied" 0 "$(rc_of "$orderctl" update "$order" DELIVERED --wait 60s)"
check "PAID after DELIVERED: rejected (65)" 65 "$(rc_of "$orderctl" update "$order" PAID --wait 60s)"
check_match "rejected update explained" 'rejected: PAID is not allowed from DELIVERED' "$(cat "$work/last.out" "$work/last.err")"

# 11. Return one pen: ReturnRefund runs to REFUND_COMPLETED, the order becomes PARTIALLY_RETURNED.
out=$("$orderctl" return "$order" --item pen:1 --reason "one too many" --wait 90s --json) ||
    { echo "$out"; tail -n 30 "$work/return-requested.log"; }
check "return --wait: REFUND_COMPLETED with the snapshot price" "REFUND_COMPLETED 250" \
    "$(jq -r '.outcome | "\(.status) \(.refund_cents)"' <<<"$out")"
check "return.requested keyed by the order id" 1 \
    "$(kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "${prefix}return.requested" -o beginning -e -q -f '%k|%h\n' |
        grep "^$order|" | grep -c "ce_id=$(jq -r .ce_id <<<"$out")" || true)"
wait_for "select status = 'PARTIALLY_RETURNED' from orders where id = '$order'" 60 || true
d=$("$orderctl" describe "$order" --json)
check "describe: PARTIALLY_RETURNED" PARTIALLY_RETURNED "$(jq -r .status <<<"$d")"
check "describe: the return and its refund" "REFUND_COMPLETED 250 pen:1 RETURN 250" \
    "$(jq -r '"\(.returns[0].status) \(.returns[0].refund_cents) \(.returns[0].items[0].product_id):\(.returns[0].items[0].quantity) \(.refunds[0].cause) \(.refunds[0].amount_cents)"' <<<"$d")"
check "describe: returned quantity per item" "pen:1 ink:0" \
    "$(jq -r '[.items[] | "\(.product_id):\(.returned)"] | join(" ")' <<<"$d")"
check "describe: the ReturnRefund execution" "ReturnRefund SUCCEEDED REFUND_COMPLETED" \
    "$(jq -r '.executions[] | select(.machine == "ReturnRefund") | "\(.machine) \(.status) \(.current_state)"' <<<"$d")"
check "history includes the return's steps" "InitiateReturn,ProcessReturn,InitiateRefund,ProcessRefund,RefundCompleted" \
    "$("$orderctl" history "$order" --json | jq -r '[.[] | select(.machine == "ReturnRefund") | .step] | join(",")')"
ret_ce=$(jq -r .ce_id <<<"$out")
ret_id=$(sql "select id from returns where source_event_id = '$ret_ce'")
check "history by the return's correlation id (its return.requested ce_id): the order's" \
    "$("$orderctl" history "$order" --json | jq -c '[.[].step]')" "$("$orderctl" history "$ret_ce" --json | jq -c '[.[].step]')"
check "describe by the return's id: its order" "$order" "$("$orderctl" describe "$ret_id" --json | jq -r .order_id)"
check_match "history text names the return by the last 12 digits of its id" "ReturnRefund\\(${ret_id: -12}\\)" \
    "$("$orderctl" history "$order")"
check "executions --machine ReturnRefund" "1 SUCCEEDED $order" \
    "$("$orderctl" executions --machine ReturnRefund --json | jq -r '"\(length) \(.[0].status) \(.[0].order_id)"')"
check "executions --machine OrderProcess --since 1h: both orders" 2 \
    "$("$orderctl" executions --machine OrderProcess --since 1h --json | jq length)"
check "executions --since a future time: none" 0 \
    "$("$orderctl" executions --since 2999-01-01T00:00:00Z --json | jq length)"

# 12. Malformed order.created records: dead-lettered, listed, shown (text and base64).
printf '%s\n' '{"customer_id": ' | kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "${prefix}order.created" \
    -k bad-1 -H ce_specversion=1.0 -H "ce_id=$tag-bad" -H ce_type=order.created -H ce_source=test \
    -H content-type=application/json
printf '\xff\xfe\n' | kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "${prefix}order.created" \
    -k bad-2 -H ce_specversion=1.0 -H "ce_id=$tag-bin" -H ce_type=order.created -H ce_source=test \
    -H content-type=application/json
wait_for "select count(*) = 2 from dead_letters where topic = '${prefix}order.created'" 60 ||
    tail -n 30 "$work/order-created.log"
l=$("$orderctl" dlq list --topic order.created --json)
check "dlq list shows both, newest first, with their code" "MALFORMED_JSON MALFORMED_JSON" \
    "$(jq -r '[.[].error_code] | join(" ")' <<<"$l")"
bad=$(jq -r '.[1].id' <<<"$l")
bin=$(jq -r '.[0].id' <<<"$l")
check "dlq show: UTF-8 payload as text" 'text {"customer_id": ' \
    "$("$orderctl" dlq show "$bad" --json | jq -r '"\(.payload_encoding) \(.payload)"')"
check "dlq show: other bytes as base64" "base64 //4=" \
    "$("$orderctl" dlq show "$bin" --json | jq -r '"\(.payload_encoding) \(.payload)"')"
check_match "dlq list text shows the topic" "${prefix//./\\.}order\.created" "$("$orderctl" dlq list)"
check "redrive --topic --dry-run selects the ones not yet redriven" "$bad $bin" \
    "$("$orderctl" dlq redrive --topic order.created --dry-run --json | jq -r '[.[].dead_letter_id] | join(" ")')"

# 12b. Redrive by predicate. The window [t0, t1) holds the two malformed
#      records' dead letters and nothing the redrive itself causes.
t0=$(sql "select to_char(min(created_at) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
          from dead_letters where topic = '${prefix}order.created'")
sleep 1.1
t1=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sleep 0.1
check "where: unknown key: usage (64)" 64 "$(rc_of "$orderctl" dlq list --where 'colour=red')"
check_match "which names the keys" 'unknown key \(topic, worker, code' "$(cat "$work/last.err")"
check "where: terms joined by anything but and: 64" 64 \
    "$(rc_of "$orderctl" dlq list --where 'code=MALFORMED_JSON or topic=order.created')"
check "where: a time that is neither RFC 3339 nor a duration: 64" 64 \
    "$(rc_of "$orderctl" dlq list --where 'since=yesterday')"
check "where: ~ on a key other than reason: 64" 64 "$(rc_of "$orderctl" dlq list --where 'code~MALFORMED')"
check "where: --topic and topic= disagree: 64" 64 \
    "$(rc_of "$orderctl" dlq list --topic order.status --where 'topic=order.created')"
check "redrive with ids and --where: usage (64)" 64 "$(rc_of "$orderctl" dlq redrive "$bad" --where 'code=X')"
check "list where code and topic" "$bin $bad" \
    "$("$orderctl" dlq list --where 'code=MALFORMED_JSON and topic=order.created' --json | jq -r '[.[].id] | join(" ")')"
check "list where order= the record key (order.created: its ce_id key)" "$bad" \
    "$("$orderctl" dlq list --where 'order=bad-1' --json | jq -r '[.[].id] | join(" ")')"
check "list where order= an order id" "$dl" \
    "$("$orderctl" dlq list --where "order=$order" --json | jq -r '[.[].id] | join(" ")')"
check "list where worker, type and a reason part (case-insensitive)" "$dl" \
    "$("$orderctl" dlq list --where "worker=order-status and type=order.status.update and reason~'OC_TEST_NO'" --json |
        jq -r '[.[].id] | join(" ")')"
check "list where reason~ escapes LIKE patterns (no row has a %)" 0 \
    "$("$orderctl" dlq list --where 'reason~%' --json | jq length)"
check "list where redriven=yes" "$dl" "$("$orderctl" dlq list --where 'redriven=yes' --json | jq -r '[.[].id] | join(" ")')"
where="code=MALFORMED_JSON and since=$t0 and until=$t1"
before=$(records order.created)
runs=$(sql "select count(*) from redrive_runs")
dry=$("$orderctl" dlq redrive --where "$where" --dry-run --json)
check "dry run by predicate: the two, oldest first" "$bad $bin" "$(jq -r '[.[].dead_letter_id] | join(" ")' <<<"$dry")"
check_match "each with why it is picked" '^code MALFORMED_JSON; created [0-9T:.-]+Z; never redriven$' \
    "$(jq -r '.[0].why' <<<"$dry")"
check "the dry run sent nothing and recorded no run" "$before $runs" \
    "$(records order.created) $(sql "select count(*) from redrive_runs")"
out=$(ORDERCTL_OPERATOR=tester "$orderctl" dlq redrive --where "$where" --rate 5 --note 'parser fixed' --json)
check "the real run redrives exactly what the dry run listed" "$(jq -r '[.[].dead_letter_id] | join(" ")' <<<"$dry")" \
    "$(jq -r '[.[].dead_letter_id] | join(" ")' <<<"$out")"
check "two records sent" "$((before + 2))" "$(records order.created)"
run=$(jq -r '.[0].run' <<<"$out")
h=$("$orderctl" dlq history --json)
check "history: the run, who, what it matched and sent, the note" \
    "$run tester orderflow 2 2 parser fixed" \
    "$(jq -r '.[0] | "\(.run) \(.operator) \(.db_user) \(.matched) \(.sent) \(.note)"' <<<"$h")"
check "history: the predicate as run (times resolved, redriven=no)" \
    "code=MALFORMED_JSON and since=$t0 and until=$t1 and redriven=no" "$(jq -r '.[0].predicate' <<<"$h")"
check "each redrive names its run" "2" "$(sql "select count(*) from redrives where run_id = $run")"
out=$("$orderctl" dlq redrive --where "$where")
check_match "the same run again: nothing left" '^no dead letters left to redrive where code=MALFORMED_JSON' "$out"
check "and nothing sent or recorded" "$((before + 2)) $((runs + 1))" \
    "$(records order.created) $(sql "select count(*) from redrive_runs")"
check_match "dlq history text" "tester" "$("$orderctl" dlq history)"

# 13. Graphs: the order and the return machine.
check "graph order --format dot renders with Graphviz" 0 \
    "$(rc_of bash -c "set -o pipefail; '$orderctl' graph order --format dot | dot -Tsvg -o '$work/order.svg'")"
check_match "the SVG holds the states" 'INVENTORY_RESERVED' "$(cat "$work/order.svg")"
check "graph ReturnRefund --format dot renders with Graphviz" 0 \
    "$(rc_of bash -c "set -o pipefail; '$orderctl' graph ReturnRefund --format dot | dot -Tsvg >/dev/null")"
check_match "graph return (Mermaid) from the return table" 'REFUND_PROCESSED --> REFUND_COMPLETED : auto / RefundCompleted' \
    "$("$orderctl" graph return)"

# 14. The workers stop cleanly.
for w in "${workers[@]}"; do
    kill -TERM "${pid[$w]}"
done
for w in "${workers[@]}"; do
    rc=0
    wait "${pid[$w]}" || rc=$?
    unset "pid[$w]"
    check "$w exits 0 on SIGTERM" 0 "$rc"
done

if [ "$failed" -ne 0 ]; then
    for w in "${workers[@]}"; do
        echo "--- $w log (tail) ---"
        tail -n 20 "$work/$w.log"
    done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
