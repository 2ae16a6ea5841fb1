#!/usr/bin/env bash
# test_rolling_restart.sh: graceful shutdown under load loses and doubles nothing.
#
# Orders stream in while the order-status replicas (two, one group) are
# restarted one after the other with SIGTERM, as a rolling deployment does,
# and order-created once too. Every SIGTERM must drain and exit 0; /readyz
# must turn 503 as soon as shutdown begins; afterwards every order is final
# with exactly one history row per step and the stock adds up. The workers'
# /metrics output is checked with promtool.
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
of_setup rolling

n=240
sql "insert into customers (id, name) values ('c1', 'Customer');
     insert into products (id, name, price_cents, stock) values ('p1', 'Thing', 100, 100000)"
of_topics_create

http_port() { # a free local port
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_a=$(http_port)
port_b=$(http_port)
port_c=$(http_port)
start_status() { # start_status NAME PORT
    of_worker_start "$1" order-status ORDERFLOW_HTTP_PORT="$2" ORDERFLOW_HTTP_ADDRESS=127.0.0.1 \
        ORDERFLOW_GRACE_PERIOD=20s
}
ready() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/readyz" || true; }
wait_ready() { # wait_ready PORT
    local i
    for ((i = 0; i < 300; i++)); do
        [ "$(ready "$1")" = 200 ] && return 0
        sleep 0.2
    done
    echo "# port $1 never became ready"
    return 1
}

of_worker_start created order-created ORDERFLOW_HTTP_PORT="$port_c" ORDERFLOW_HTTP_ADDRESS=127.0.0.1
start_status status-a "$port_a"
start_status status-b "$port_b"
wait_ready "$port_a"
wait_ready "$port_b"
wait_ready "$port_c"
check "/healthz answers 200" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port_a/healthz")"

# The load: n orders over ~12 s from a background publisher.
(
    for ((i = 0; i < n; i++)); do
        of_publish order.created "k$i" "$OF_TAG-$i" order.created \
            '{"customer_id":"c1","items":[{"product_id":"p1","quantity":1}]}'
        sleep 0.05
    done
) &
publisher=$!

sleep 2
# Rolling restart of order-status: a, then b; then order-created.
pid_a=${OF_PIDS[status-a]}
kill -TERM "$pid_a"
sleep 0.3 # the signal reaches the loop first
readyz_after_term=$(ready "$port_a")
rc=0
wait "$pid_a" || rc=$?
unset "OF_PIDS[status-a]"
check "status-a: /readyz is 503 (or gone) once SIGTERM arrived" 1 \
    "$([ "$readyz_after_term" = 503 ] || [ "$readyz_after_term" = 000 ] && echo 1 || echo 0)"
check "status-a exits 0 after draining under load" 0 "$rc"
start_status status-a2 "$port_a"
wait_ready "$port_a"
sleep 2
of_worker_stop status-b
start_status status-b2 "$port_b"
wait_ready "$port_b"
sleep 1
of_worker_stop created
of_worker_start created2 order-created ORDERFLOW_HTTP_PORT="$port_c" ORDERFLOW_HTTP_ADDRESS=127.0.0.1
wait "$publisher"

wait_for "select count(*) = $n and bool_and(status = 'CONFIRMED') from orders" 120 || true
check "every order confirmed" "$n CONFIRMED" \
    "$(sql "select count(*) || ' ' || min(status) from orders")"
check "one order per order.created event" "$n" \
    "$(sql "select count(distinct source_event_id) from orders")"
check "exactly one history row per step per order" 0 \
    "$(sql "select count(*) from (select e.order_id, h.step from execution_history h
             join executions e on e.id = h.execution_id
             group by 1, 2 having count(*) <> 1) d")"
check "three OrderProcess steps per order" "$((3 * n))" \
    "$(sql "select count(*) from execution_history h join executions e on e.id = h.execution_id
             where e.machine = 'OrderProcess'")"
check "stock taken once per order" "$((100000 - n))" "$(sql "select stock from products where id = 'p1'")"
check "no rejected or ignored history rows" 0 \
    "$(sql "select count(*) from execution_history where outcome <> 'applied'")"
wait_for "select count(*) = 0 from outbox where published_at is null" 60 || true
check "every outbox row published" 0 "$(sql "select count(*) from outbox where published_at is null")"

# The metrics of a worker that did real work, in Prometheus' own checker.
promtool=$(command -v promtool || true)
[ -n "$promtool" ] || promtool="$ORDERFLOW_SOURCE_DIR/.cache/tools/promtool"
curl -s "http://127.0.0.1:$port_a/metrics" >"$OF_WORK/metrics.txt"
check "metrics count transitions" 1 \
    "$(grep -c '^orderflow_transitions_total{machine="OrderProcess",from="CREATED",to="INVENTORY_RESERVED"}' "$OF_WORK/metrics.txt" || true)"
if [ -x "$promtool" ]; then
    check "promtool check metrics accepts /metrics" "" "$("$promtool" check metrics <"$OF_WORK/metrics.txt" 2>&1)"
else
    check "promtool is installed (ops/install-deps)" yes no
fi
of_finish
