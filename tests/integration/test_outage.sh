#!/usr/bin/env bash
# test_outage.sh: a database outage longer than max.poll.interval.ms evicts no
# replica, and a takeover race dead-letters nothing.
#
# 1. Two order-created replicas reach PostgreSQL through a TCP proxy
#    (tcp_proxy.py); killing the proxy cuts them off while the server keeps
#    running. With max.poll.interval.ms at 10 s the outage lasts 25 s, orders
#    arrive during it, and a third replica joins in the middle of it. The
#    busy replicas must pause fetching and serve the group: none is evicted
#    ("maximum poll interval" in no log), the joining replica gets partitions
#    during the outage, and once the proxy is back every order is created
#    exactly once with no dead letter.
# 2. A second consumer commits an event's inbox row while the worker's
#    transaction for the same event runs (a session holds the row
#    uncommitted, the worker's insert waits on it, then it commits): the
#    worker meets a unique violation on inbox_pkey, checks the inbox again
#    and acknowledges the event as a duplicate instead of dead-lettering it.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup outage
of_topics_create
sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values ('p-1', 'Bolt', 300, 100000)"
good='{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":1}]}'

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
proxy_port=$(free_port)
proxy_pid=
proxy_start() {
    python3 "$ORDERFLOW_SOURCE_DIR/tests/integration/tcp_proxy.py" "$proxy_port" 127.0.0.1 "$PGPORT" \
        >"$OF_WORK/proxy.out" 2>&1 &
    proxy_pid=$!
    OF_PIDS[proxy]=$proxy_pid
    for ((i = 0; i < 50; i++)); do
        grep -q listening "$OF_WORK/proxy.out" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "# the proxy did not start"
    return 1
}
proxy_kill() {
    kill -KILL "$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
    unset "OF_PIDS[proxy]"
}
proxied_url="postgresql://${PGUSER:-orderflow}@127.0.0.1:${proxy_port}/${OF_DB}"
replica() { # replica NAME: an order-created replica reaching Postgres through the proxy
    of_worker_start "$1" order-created DATABASE_URL="$proxied_url" \
        KAFKA_SESSION_TIMEOUT_MS=6000 KAFKA_MAX_POLL_INTERVAL_MS=10000
}
wait_partitions() { # wait_partitions NAME SECONDS: until NAME holds a partition
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        [ "$(of_worker_partitions "$1")" -gt 0 ] && return 0
        sleep 0.2
    done
    return 1
}

# --- 1. an outage longer than max.poll.interval.ms --------------------------------
proxy_start
replica oc-a
replica oc-b
wait_partitions oc-a 60 && wait_partitions oc-b 60 || true
# One order before the outage: both replicas work.
of_publish order.created "$OF_TAG-k0" "$OF_TAG-o-0" order.created "$good"
wait_for "select count(*) = 1 from orders where correlation_id = '$OF_TAG-o-0'" 60 || true

echo "# outage begins"
proxy_kill
n=24
for ((i = 1; i <= n; i++)); do
    of_publish order.created "$OF_TAG-k$i" "$OF_TAG-o-$i" order.created "$good"
done
sleep 4
replica oc-c
joined=no
for ((i = 0; i < 21 * 5; i++)); do
    if [ "$joined" = no ] && [ "$(of_worker_partitions oc-c)" -gt 0 ]; then
        joined=yes
    fi
    sleep 0.2
done
c_parts=$(of_worker_partitions oc-c)
echo "# outage ends after 25 s; partitions: oc-a $(of_worker_partitions oc-a), oc-b $(of_worker_partitions oc-b), oc-c $c_parts (of 6)"
proxy_start

check "the replica that joined during the outage got partitions during it" yes "$joined"
# Had the busy replicas been evicted, the one that joined would hold all six.
check "and shares them with the busy replicas, which were not evicted" yes \
    "$([ "$c_parts" -gt 0 ] && [ "$c_parts" -lt 6 ] && echo yes || echo no)"
wait_for "select count(*) = $((n + 1)) from orders where correlation_id like '$OF_TAG-o-%'" 120 || true
check "every order is created once after the outage" "$((n + 1)) $((n + 1))" \
    "$(sql "select count(*) || ' ' || count(distinct correlation_id) from orders
            where correlation_id like '$OF_TAG-o-%'")"
check "no dead letter" 0 "$(sql "select count(*) from dead_letters")"
check "no replica exceeded max.poll.interval.ms" 0 \
    "$(cat "$OF_WORK"/oc-*.log | grep -c 'maximum poll interval' || true)"
check "a busy replica paused fetching and resumed it" yes \
    "$(grep -q 'fetching paused' "$OF_WORK/oc-a.log" "$OF_WORK/oc-b.log" &&
       grep -q 'fetching resumed' "$OF_WORK/oc-a.log" "$OF_WORK/oc-b.log" && echo yes || echo no)"
of_worker_stop oc-c
of_worker_stop oc-b

# --- 2. a unique violation is checked against the inbox ------------------------------
# A fresh replica alone in a group of its own owns every partition; one order shows
# it at work. Then a session takes the inbox row of the next event and holds it
# uncommitted for 6 s (within the workers' lock_timeout of 10 s): the worker's
# insert of the same row waits on it and fails once the session commits.
of_worker_stop oc-a
of_worker_start oc-r order-created ORDERFLOW_GROUP_ID="$OF_TAG-race"
of_publish order.created "$OF_TAG-kr" "$OF_TAG-before" order.created "$good"
wait_for "select count(*) = 1 from orders where correlation_id = '$OF_TAG-before'" 60 || true
race="$OF_TAG-race"
psql "$OF_URL" -XAtq -v ON_ERROR_STOP=1 >"$OF_WORK/race.out" 2>&1 <<SQL &
begin;
insert into inbox (consumer, ce_id, ce_type, topic, partition, "offset")
    values ('order-created', '$race', 'order.created', '${OF_PREFIX}order.created', 0, 0);
select pg_sleep(6);
commit;
SQL
racer=$!
sleep 1
of_publish order.created "$OF_TAG-kr" "$race" order.created "$good"
# The worker's transaction is waiting on the session's row.
wait_for "select count(*) > 0 from pg_stat_activity where datname = current_database()
          and wait_event_type = 'Lock' and application_name <> 'psql'" 10 || true
wait "$racer"
# An order after it on the same key: once it exists, the race's event has ended.
of_publish order.created "$OF_TAG-kr" "$OF_TAG-after" order.created "$good"
wait_for "select count(*) = 1 from orders where correlation_id = '$OF_TAG-after'" 60 || true
check "the worker met the unique violation and checked the inbox again" yes \
    "$(grep -q 'checking the inbox again' "$OF_WORK/oc-r.log" && echo yes || echo no)"
check "the raced event is a duplicate: no order of its own" 0 \
    "$(sql "select count(*) from orders where correlation_id = '$race'")"
check "and no dead letter" 0 "$(sql "select count(*) from dead_letters")"
of_worker_stop oc-r
proxy_kill
of_finish
