#!/usr/bin/env bash
# test_gateway.sh: orderflow-gateway, the HTTP front door, with curl against
# the real stack and the three workers. Every route and every error:
#   POST /orders: 202 with Location and the ce_id; the order reaches
#     CONFIRMED (GET ?wait=); the same Idempotency-Key twice makes one order;
#     bodies the worker would dead-letter get 400 with the contract's code and
#     publish nothing; a bad Idempotency-Key, a body that is not JSON or too
#     large (413);
#   POST /orders/{id}/status and /returns: applied; a path id that is not a
#     UUID, a body naming another order;
#   GET /orders/{id} by order id, correlation id and return ce_id; ?wait=
#     reached and timed out; unknown ids (404), a bad wait= (400);
#     /orders/{id}/history with every row's span, the executions' traces;
#   a traceparent header passed on as the event's ce_traceparent (an
#   invalid one ignored);
#   405 with Allow, 404 for other paths, /readyz, /metrics, the access log;
#   over refuse-above-backlog unpublished outbox rows: writes 503 OVERLOADED
#   with Retry-After, reads still served, 202 again once the backlog is gone;
#   a gateway with a token: 401 without it, 202 with it; SIGTERM: exit 0;
#   every exchange checked against gateway/openapi.json (check_openapi.py).
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup gw
of_topics_create
sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values ('p-1', 'Bolt', 300, 100)"
of_worker_start oc order-created
of_worker_start os order-status
of_worker_start rr return-requested
PORT=$((28450 + $$ % 40))
GW="$ORDERFLOW_BUILD_DIR/gateway/orderflow-gateway"
of_process_start gw "$GW" ORDERFLOW_GATEWAY_PORT=$PORT ORDERFLOW_GATEWAY_MAX_BODY=2048
URL="http://127.0.0.1:$PORT"
of_http_wait_ready "$URL" || true
check "/readyz: 200" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")"

# req METHOD PATH [BODY [curl args...]]: prints "STATUS BODY"; headers in $OF_WORK/h
req() {
    local method=$1 path=$2 body=${3-}
    shift 3 2>/dev/null || shift $#
    local args=(-s -X "$method" -D "$OF_WORK/h" -o "$OF_WORK/b" -w '%{http_code}' "$@")
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    local code
    code=$(curl "${args[@]}" "$URL$path")
    # Every exchange is checked against gateway/openapi.json at the end.
    jq -cn --arg m "$method" --arg p "$path" --argjson s "$code" --rawfile b "$OF_WORK/b" \
        '{method: $m, path: $p, status: $s, body: $b}' >>"$OF_WORK/exchanges.jsonl"
    printf '%s %s' "$code" "$(cat "$OF_WORK/b")"
}
header() { tr -d '\r' <"$OF_WORK/h" | awk -v n="$(tr '[:upper:]' '[:lower:]' <<<"$1")" -F': ' 'tolower($1) == n {print $2}'; }
status() { cut -d' ' -f1 <<<"$1"; }
json() { cut -d' ' -f2- <<<"$1" | jq -r "$2"; }
records() { of_kafka_load "$1" >/dev/null; sql "select count(*) from kafka_records where topic = '$OF_PREFIX$1'"; }

good='{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":2}],"currency":"EUR"}'

# 1. An order over HTTP.
r=$(req POST /orders "$good")
check "POST /orders: 202" 202 "$(status "$r")"
ce=$(json "$r" .ce_id)
check "with Location /orders/<ce_id> and the correlation id" "/orders/$ce $ce" "$(header Location) $(json "$r" .correlation_id)"
r=$(req GET "/orders/$ce?wait=CONFIRMED&timeout=30s")
check "GET ?wait=CONFIRMED: 200, reached, the order view" "200 reached CONFIRMED 600 1" \
    "$(status "$r") $(header Orderflow-Wait) $(json "$r" '"\(.status) \(.total_cents) \(.items | length)"')"
order=$(json "$r" .order_id)
check "the same view by the order id" CONFIRMED "$(json "$(req GET "/orders/$order")" .status)"
r=$(req GET "/orders/$order/history")
check "GET /orders/{id}/history: the OrderProcess steps" "CreateOrder,UpdateInventory,OrderCompleted" \
    "$(json "$r" '[.[] | select(.machine == "OrderProcess") | .step] | join(",")')"

check "each history row is a span: trace id, span id" 3 \
    "$(json "$r" '[.[] | select(.machine == "OrderProcess") | select((.trace_id | test("^[0-9a-f]{32}$")) and (.span_id | test("^[0-9a-f]{16}$")))] | length')"
check "the order view shows each execution's trace" 2 \
    "$(json "$(req GET "/orders/$order")" '[.executions[] | select(.trace_id | test("^[0-9a-f]{32}$"))] | length')"

# 1b. A client's trace context: a valid traceparent (and tracestate) header
# becomes the event's ce_traceparent (ce_tracestate), and the order's first
# step is a child of the client's span; an invalid one is ignored (202, the
# event carries none, the worker starts a new trace).
TRACE=4bf92f3577b34da6a3ce929d0e0e4736
r=$(req POST /orders "$good" -H "Idempotency-Key: $OF_TAG-t1" \
    -H "traceparent: 00-$TRACE-00f067aa0ba902b7-01" -H 'tracestate: rojo=00f067aa0ba902b7')
check "POST with traceparent: 202" 202 "$(status "$r")"
r=$(req POST /orders "$good" -H "Idempotency-Key: $OF_TAG-t2" -H 'traceparent: 00-not-a-trace-01' \
    -H 'tracestate: rojo=1')
check "POST with an invalid traceparent: 202 all the same" 202 "$(status "$r")"
of_kafka_wait order.created "select count(*) = 2 from kafka_records where key in ('$OF_TAG-t1', '$OF_TAG-t2')" 30 || true
check "the event carries the client's trace context" "00-$TRACE-00f067aa0ba902b7-01 rojo=00f067aa0ba902b7" \
    "$(sql "select (headers->>'ce_traceparent') || ' ' || (headers->>'ce_tracestate') from kafka_records where key = '$OF_TAG-t1'")"
check "an invalid one is not passed on" "false false" \
    "$(sql "select (headers ? 'ce_traceparent')::text || ' ' || (headers ? 'ce_tracestate')::text from kafka_records where key = '$OF_TAG-t2'")"
wait_for "select count(*) = 2 from orders where source_event_id in ('$OF_TAG-t1', '$OF_TAG-t2') and status = 'CONFIRMED'" 60 || true
r=$(req GET "/orders/$OF_TAG-t1/history")
check "CreateOrder is a child of the client's span, on its trace" "$TRACE 00f067aa0ba902b7" \
    "$(json "$r" '.[] | select(.step == "CreateOrder") | "\(.trace_id) \(.parent_span_id)"')"
check "and every step of the order is on that trace" "$TRACE" \
    "$(json "$r" '[.[].trace_id] | unique | join(",")')"
r=$(req GET "/orders/$OF_TAG-t2/history")
check "with an invalid one, CreateOrder is the root of a new trace" "null true" \
    "$(json "$r" '.[] | select(.step == "CreateOrder") | "\(.parent_span_id) \(.trace_id != "'$TRACE'")"')"

# 2. A client retry with the same Idempotency-Key is the same event.
for _ in 1 2; do
    r=$(req POST /orders "$good" -H "Idempotency-Key: $OF_TAG-k1")
    check "POST with Idempotency-Key: 202, ce_id = the key" "202 $OF_TAG-k1" "$(status "$r") $(json "$r" .ce_id)"
done
wait_for "select count(*) = 1 from orders where source_event_id = '$OF_TAG-k1' and status = 'CONFIRMED'" 60 || true
check "two POSTs, one order" 1 "$(sql "select count(*) from orders where source_event_id = '$OF_TAG-k1'")"

# 3. Refused bodies publish nothing.
before=$(records order.created)
r=$(req POST /orders '{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":0}]}')
check "quantity 0: 400 with the decoder's code" "400 OUT_OF_RANGE" "$(status "$r") $(json "$r" .error)"
check_match "and its reason" 'items\[0\]\.quantity' "$(json "$r" .reason)"
r=$(req POST /orders '{"customer_id":"c-1"}')
check "no items: 400 MISSING_FIELD" "400 MISSING_FIELD" "$(status "$r") $(json "$r" .error)"
r=$(req POST /orders '{"customer_id":')
check "not JSON: 400 MALFORMED_JSON" "400 MALFORMED_JSON" "$(status "$r") $(json "$r" .error)"
r=$(req POST /orders '[1]')
check "not an object: 400 DATA_NOT_OBJECT" "400 DATA_NOT_OBJECT" "$(status "$r") $(json "$r" .error)"
r=$(req POST /orders "$good" -H 'Idempotency-Key: not a key!')
check "a bad Idempotency-Key: 400 INVALID_ATTRIBUTE" "400 INVALID_ATTRIBUTE" "$(status "$r") $(json "$r" .error)"
big=$(printf '{"customer_id":"c-1","pad":"%03000d"}' 0)
r=$(req POST /orders "$big")
check "a body over max-body: 413 BODY_TOO_LARGE" "413 BODY_TOO_LARGE" "$(status "$r") $(json "$r" .error)"
check "none of them was published" "$before" "$(records order.created)"

# 4. Status updates and returns.
r=$(req POST "/orders/$order/status" '{"status":"PAID","expected_version":3}')
check "POST /orders/{id}/status: 202, Location the order" "202 /orders/$order" "$(status "$r") $(header Location)"
r=$(req GET "/orders/$order?wait=PAID&timeout=30s")
check "PAID applied" "reached PAID 4" "$(header Orderflow-Wait) $(json "$r" '"\(.status) \(.version)"')"
r=$(req POST "/orders/$order/status" '{"order_id":"01234567-89ab-7def-8123-456789abcdef","status":"SHIPPED"}')
check "a body naming another order: 400 INVALID_ID" "400 INVALID_ID" "$(status "$r") $(json "$r" .error)"
r=$(req POST "/orders/not-a-uuid/status" '{"status":"SHIPPED"}')
check "a path id that is not a UUID: 400 INVALID_ID" "400 INVALID_ID" "$(status "$r") $(json "$r" .error)"
r=$(req POST "/orders/$order/status" '{"status":"LOST"}')
check "a status outside the set: 400 INVALID_STATUS" "400 INVALID_STATUS" "$(status "$r") $(json "$r" .error)"
r=$(req POST "/orders/$order/returns" '{"items":[{"product_id":"p-1","quantity":1}],"reason":"too many"}')
check "POST /orders/{id}/returns: 202" 202 "$(status "$r")"
rce=$(json "$r" .ce_id)
wait_for "select count(*) = 1 from returns where source_event_id = '$rce' and status = 'REJECTED'" 60 || true
r=$(req GET "/orders/$rce")
check "GET by the return's correlation id: its order, the return rejected (not delivered)" \
    "$order REJECTED ORDER_NOT_DELIVERED" "$(json "$r" '"\(.order_id) \(.returns[0].status) \(.returns[0].status_reason)"')"

# 5. Reads that find nothing, and bad waits.
r=$(req GET /orders/no-such-order)
check "an unknown id: 404 NOT_FOUND" "404 NOT_FOUND" "$(status "$r") $(json "$r" .error)"
r=$(req GET "/orders/no-such-order?wait=CONFIRMED&timeout=600ms")
check "an unknown id with wait: 404 after the timeout" "404 NOT_FOUND" "$(status "$r") $(json "$r" .error)"
r=$(req GET "/orders/$order?wait=DELIVERED&timeout=300ms")
check "a wait that times out: 200 with the current view" "200 timeout PAID" \
    "$(status "$r") $(header Orderflow-Wait) $(json "$r" .status)"
r=$(req GET "/orders/$order?wait=BOGUS")
check "wait= a non-status: 400 INVALID_STATUS" "400 INVALID_STATUS" "$(status "$r") $(json "$r" .error)"
r=$(req GET "/orders/$order?wait=PAID&timeout=soon")
check "timeout= not a duration: 400 OUT_OF_RANGE" "400 OUT_OF_RANGE" "$(status "$r") $(json "$r" .error)"

# 6. Methods and paths.
r=$(req DELETE /orders)
check "DELETE /orders: 405, Allow: POST" "405 METHOD_NOT_ALLOWED POST" "$(status "$r") $(json "$r" .error) $(header Allow)"
r=$(req POST "/orders/$order")
check "POST /orders/{id}: 405, Allow: GET, HEAD" "405 GET, HEAD" "$(status "$r") $(header Allow)"
r=$(req GET /customers)
check "another path: 404" "404 NOT_FOUND" "$(status "$r") $(json "$r" .error)"
check_match "/metrics counts by route and status" 'orderflow_gateway_requests_total\{route="POST /orders",status="202"\} [1-9]' \
    "$(curl -s "$URL/metrics")"
check_match "/metrics counts what was published" "orderflow_gateway_published_total\\{topic=\"${OF_PREFIX//./\\.}order\\.created\"\\} 5" \
    "$(curl -s "$URL/metrics")"
check_match "the access log has every request" '"msg":"http POST /orders 202 [0-9]+ bytes' "$(cat "$OF_WORK/gw.log")"

# 7. Over its limits: a gateway refusing writes above 30 unpublished outbox rows.
P3=$((PORT + 80))
of_process_start gw3 "$GW" ORDERFLOW_GATEWAY_PORT=$P3 ORDERFLOW_GATEWAY_REFUSE_ABOVE_BACKLOG=30
of_http_wait_ready "http://127.0.0.1:$P3" || true
URL="http://127.0.0.1:$P3"
check "under the limit: 202" 202 "$(status "$(req POST /orders "$good")")"
sql "insert into outbox (id, topic, key, payload, headers)
     select gen_random_uuid(), '${OF_PREFIX}gw.nowhere', null, convert_to('{}', 'UTF8'), '[]'
     from generate_series(1, 40)"
for ((i = 0; i < 50; i++)); do
    r=$(req POST /orders "$good")
    [ "$(status "$r")" = 503 ] && break
    sleep 0.2
done
check "40 unpublished rows: 503 OVERLOADED, Retry-After 5" "503 OVERLOADED 5" \
    "$(status "$r") $(json "$r" .error) $(header Retry-After)"
check_match "orderflow_gateway_overloaded 1" 'orderflow_gateway_overloaded 1' "$(curl -s "$URL/metrics")"
check "reads still answer" 200 "$(status "$(req GET "/orders/$order")")"
sql "update outbox set published_at = now() where topic = '${OF_PREFIX}gw.nowhere'"
for ((i = 0; i < 50; i++)); do
    r=$(req POST /orders "$good")
    [ "$(status "$r")" = 202 ] && break
    sleep 0.2
done
check "the backlog gone: 202 again" 202 "$(status "$r")"

# 8. A gateway with a token.
P2=$((PORT + 40))
of_process_start gw2 "$GW" ORDERFLOW_GATEWAY_PORT=$P2 ORDERFLOW_GATEWAY_TOKEN=s3cret
of_http_wait_ready "http://127.0.0.1:$P2" || true
URL="http://127.0.0.1:$P2"
r=$(req POST /orders "$good")
check "token set, none given: 401, WWW-Authenticate: Bearer" "401 UNAUTHORIZED Bearer" "$(status "$r") $(json "$r" .error) $(header WWW-Authenticate)"
r=$(req POST /orders "$good" -H 'Authorization: Bearer wrong')
check "the wrong token: 401" 401 "$(status "$r")"
r=$(req POST /orders "$good" -H 'Authorization: Bearer s3cret')
check "the token: 202" 202 "$(status "$r")"
check "reads need no token" 200 "$(status "$(req GET "/orders/$order")")"
check "the token is in no log line" 0 "$(grep -c s3cret "$OF_WORK/gw2.log" || true)"

# 9. Every exchange above as gateway/openapi.json documents it.
out=$(python3 "$ORDERFLOW_SOURCE_DIR/tests/integration/check_openapi.py" \
    "$ORDERFLOW_SOURCE_DIR/gateway/openapi.json" "$OF_WORK/exchanges.jsonl" 2>&1) || true
check "every route, status and body as openapi.json documents them, every operation exercised" \
    "0 problem(s)" "$(tail -n 1 <<<"$out" | grep -o '[0-9]* problem(s)')"
grep -v '^#' <<<"$out" | sed 's/^/# /' || true
of_finish
