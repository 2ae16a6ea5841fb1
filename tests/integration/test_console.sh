#!/usr/bin/env bash
# test_console.sh: orderflow-console against the test stack, its API with curl and its page in a
# real browser (headless Chromium through Selenium: tests/integration/console_browser.py).
#
# The three workers run; one order is CONFIRMED; two records are dead-lettered: an
# order.created whose value and headers carry markup (<img onerror=...>, <script>), and a
# PAID update that a check constraint (standing in for a bad migration) makes fail
# (PROCESSING_FAILED). The console runs with a token and the workers' /metrics.
#   1. API: executions with counts, the search by correlation id, one execution with its
#      history (each row a span of the execution's trace), the machine table, the figures from the workers' metrics; the security
#      headers; writes without the token 401, a console without a token is read-only (403);
#      bad filters 400; unknown things 404.
#   2. Browser: the list and the search, the execution's diagram with CONFIRMED lit and
#      the path taken, its history; an order cancelled with a reason that carries markup,
#      and the hostile dead letter, shown as text with nothing run;
#      a dry run, a wrong token refused, the redrive with the token applied (PAID) and shown
#      processed; the parked and figures pages.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

for need in /usr/bin/chromium /usr/bin/chromedriver; do
    if [ ! -x "$need" ]; then
        echo "not ok - $need is missing: run ops/install-deps --test-tools (chromium, chromium-driver, python3-selenium)"
        exit 1
    fi
done
if ! /usr/bin/python3 -c 'import selenium' 2>/dev/null; then
    echo "not ok - python3-selenium is missing: run ops/install-deps --test-tools"
    exit 1
fi

of_setup con
of_topics_create
sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values ('p-1', 'Bolt', 300, 100)"
P=$((ORDERFLOW_KAFKA_PORT + 431))
of_worker_start oc order-created ORDERFLOW_HTTP_PORT=$P
of_worker_start os order-status ORDERFLOW_HTTP_PORT=$((P + 1))
of_worker_start rr return-requested ORDERFLOW_HTTP_PORT=$((P + 2))
TOKEN="t-$OF_TAG"
URL="http://127.0.0.1:$((P + 3))"
METRICS="http://127.0.0.1:$P/metrics,http://127.0.0.1:$((P + 1))/metrics,http://localhost:$((P + 2))/metrics"
of_process_start console "$ORDERFLOW_BUILD_DIR/console/orderflow-console" \
    ORDERFLOW_CONSOLE_PORT=$((P + 3)) ORDERFLOW_CONSOLE_TOKEN="$TOKEN" \
    ORDERFLOW_CONSOLE_METRICS_URLS="$METRICS" ORDERFLOW_ORDERCTL="$OF_ORDERCTL"
of_http_wait_ready "$URL" 30

# The order, and the two dead letters.
CE="$OF_TAG-ord"
of_publish order.created "$CE" "$CE" order.created '{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":2}]}'
wait_for "select status = 'CONFIRMED' from orders where correlation_id = '$CE'" 60 || true
ORDER=$(sql "select id from orders where correlation_id = '$CE'")
check "the order is CONFIRMED" CONFIRMED "$(sql "select status from orders where id = '$ORDER'")"
# A second order, cancelled with a reason that carries markup: the reason is free text
# (contract), kept as the order's status_reason and in the history's detail.
CE2="$OF_TAG-hostile"
of_publish order.created "$CE2" "$CE2" order.created '{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":1}]}'
wait_for "select status = 'CONFIRMED' from orders where correlation_id = '$CE2'" 60 || true
ORDER2=$(sql "select id from orders where correlation_id = '$CE2'")
of_publish order.status "$ORDER2" "$OF_TAG-cancel" order.status.update \
    "{\"order_id\":\"$ORDER2\",\"status\":\"CANCELLED\",\"reason\":\"<img src=x onerror=window.__pwned=3><script>window.__pwned=4</script>\"}"
wait_for "select status = 'CANCELLED' from orders where id = '$ORDER2'" 60 || true
check "the order with the hostile reason is CANCELLED, the reason kept as it is" "CANCELLED <img src=x" \
    "$(sql "select status || ' ' || left(status_reason, 10) from orders where id = '$ORDER2'")"
HOSTILE='{"customer_id":"<img src=x onerror=window.__pwned=1>","items":[{"product_id":"p-1","quantity":1}]}'
of_publish order.created "$OF_TAG-bad" "$OF_TAG-bad" order.created "$HOSTILE" \
    -H 'x-note=<script>window.__pwned=2</script>'
sql "alter table orders add constraint con_test_no_paid check (status <> 'PAID') not valid"
of_publish order.status "$ORDER" "$OF_TAG-paid" order.status.update "{\"order_id\":\"$ORDER\",\"status\":\"PAID\"}"
wait_for "select count(*) = 2 from dead_letters where ce_id in ('$OF_TAG-bad', '$OF_TAG-paid')" 60 || true
BAD=$(sql "select id from dead_letters where ce_id = '$OF_TAG-bad'")
PAID=$(sql "select id from dead_letters where ce_id = '$OF_TAG-paid'")
check "both records are dead-lettered" "1 1" "$(sql "select count(*) from dead_letters where id = '$BAD'") $(sql "select count(*) from dead_letters where id = '$PAID'")"
sql "alter table orders drop constraint con_test_no_paid"

# --- 1. the API ---------------------------------------------------------------------------
get() { curl -sS -o "$OF_WORK/body" -w '%{http_code}' "$@"; }
check "GET / serves the page" 200 "$(get "$URL/")"
check_match "with a Content-Security-Policy that allows only the console's own script" \
    "script-src 'self'" "$(curl -sSI "$URL/" | grep -i '^content-security-policy')"
check "GET /api/executions" 200 "$(get "$URL/api/executions")"
check "lists the orders' four executions, with counts per status (one RUNNING: the first order's OrderUpdate)" "4 4 1" \
    "$(jq -r '"\(.rows | length) \([.counts[]] | add) \(.counts.RUNNING)"' "$OF_WORK/body")"
check "the search by correlation id finds them" "OrderProcess,OrderUpdate" \
    "$(get "$URL/api/executions?q=$CE" >/dev/null; jq -r '[.rows[].machine] | sort | join(",")' "$OF_WORK/body")"
check "a search that names nothing finds nothing" 0 \
    "$(get "$URL/api/executions?q=nothing-here" >/dev/null; jq -r '.total' "$OF_WORK/body")"
check "a search that is no id is 400" 400 "$(get "$URL/api/executions?q=%3Cscript%3E")"
check "a time that is no time is 400" 400 "$(get "$URL/api/executions?since=not-a-time")"
X=$(get "$URL/api/executions?q=$CE&machine=OrderProcess" >/dev/null; jq -r '.rows[0].id' "$OF_WORK/body")
check "one execution: state, history, the order's executions" "CONFIRMED CreateOrder,UpdateInventory,OrderCompleted 2" \
    "$(get "$URL/api/executions/$X" >/dev/null; jq -r '"\(.execution.current_state) \([.history[].step] | join(",")) \(.executions | length)"' "$OF_WORK/body")"
check "each history row is a span of the execution's trace (the first the root)" "3 3 $(sql "select of_trace_hex(h.trace_id) from execution_history h where h.execution_id = '$X' and h.seq = 1") null" \
    "$(jq -r '"\([.history[] | select(.span_id | test("^[0-9a-f]{16}$"))] | length) \([.history[] | select(.trace_id == $t)] | length) \($t) \(.history[0].parent_span_id)"' \
        --arg t "$(jq -r .execution.trace_id "$OF_WORK/body")" "$OF_WORK/body")"
check "an unknown execution is 404" 404 "$(get "$URL/api/executions/01a24ebe-0000-7000-8000-000000000000")"
check "the machine of OrderProcess: the order machine's table" "order 10" \
    "$(get "$URL/api/machines/OrderProcess" >/dev/null; jq -r '"\(.machine) \(.states | length)"' "$OF_WORK/body")"
check "dead letters through orderctl" "$BAD $PAID" \
    "$(get "$URL/api/dlq" >/dev/null; jq -r '[.[].id] | sort | map(tostring) | join(" ")' "$OF_WORK/body")"
check "an unknown dead letter is 404" 404 "$(get "$URL/api/dlq/987654321")"
check "a redrive without the token is 401" 401 \
    "$(get -X POST "$URL/api/dlq/redrive" -d "{\"ids\":[\"$PAID\"]}")"
check "a dry run needs no token and sends nothing" "200 $PAID 0" \
    "$(code=$(get -X POST "$URL/api/dlq/redrive" -d "{\"ids\":[\"$PAID\"],\"dry_run\":true}"); echo "$code $(jq -r '.[0].dead_letter_id' "$OF_WORK/body") $(sql "select redrive_count from dead_letters where id = $PAID")")"
check "ids that are no ids are 400" 400 \
    "$(get -X POST "$URL/api/dlq/redrive" -H "Authorization: Bearer $TOKEN" -d '{"ids":["1; rm -rf /"]}')"
ok=0
for _ in $(seq 1 40); do
    get "$URL/api/figures" >/dev/null
    [ "$(jq -r '[.sources[] | select(.ok)] | length' "$OF_WORK/body")" = 3 ] &&
        [ "$(jq -r '[.samples[].events_per_s] | max > 0' "$OF_WORK/body")" = true ] &&
        [ "$(jq -r '[.samples[].dead_per_min] | max > 0' "$OF_WORK/body")" = true ] && ok=1 && break
    sleep 1
done
check "the figures come from the three workers' /metrics: events/s and dead letters/min seen" 1 "$ok"

# A console without a token is read-only.
of_process_start ro "$ORDERFLOW_BUILD_DIR/console/orderflow-console" \
    ORDERFLOW_CONSOLE_PORT=$((P + 4)) ORDERFLOW_ORDERCTL="$OF_ORDERCTL"
of_http_wait_ready "http://127.0.0.1:$((P + 4))" 30
check "without a token: read-only" "false 403" \
    "$(curl -sS "http://127.0.0.1:$((P + 4))/api/config" | jq -r .writable) $(get -X POST "http://127.0.0.1:$((P + 4))/api/dlq/redrive" -H "Authorization: Bearer $TOKEN" -d "{\"ids\":[\"$PAID\"]}")"
of_worker_stop ro

# --- 2. the browser --------------------------------------------------------------------
jq -n --arg c "$CE" --arg h "$BAD" --arg r "$PAID" --arg t "$TOKEN" --arg o "$CE2" \
    '{correlation: $c, hostile_dlq: $h, redrive_dlq: $r, token: $t, hostile_order: $o}' >"$OF_WORK/checks.json"
/usr/bin/python3 "$ORDERFLOW_SOURCE_DIR/tests/integration/console_browser.py" check "$URL" \
    "$OF_WORK/checks.json" | tee "$OF_WORK/browser.out" || true
check "every browser check passed" 0 "$(grep -c '^not ok' "$OF_WORK/browser.out" || true)"
check "the browser's checks ran" 1 "$(grep -c '^ok - and the console shows the redriven record processed' "$OF_WORK/browser.out" || true)"
check "the redriven PAID applied" "PAID 4" "$(sql "select status || ' ' || version from orders where id = '$ORDER'")"
check "the redrive is recorded with the console as operator" "orderflow-console" \
    "$(sql "select operator from redrive_runs order by id desc limit 1")"

of_worker_stop console
of_worker_stop rr
of_worker_stop os
of_worker_stop oc
of_finish
