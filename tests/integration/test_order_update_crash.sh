#!/usr/bin/env bash
# test_order_update_crash.sh: OrderUpdate survives SIGKILL of order-status amid update streams.
#
# 100 orders (ample stock: all are confirmed) go through order-created and
# order-status. A publisher loop polls for confirmed orders and, for each as
# soon as it is confirmed, publishes its whole update stream PAID, SHIPPED,
# DELIVERED (structured-mode events, one kcat call per poll, keyed by the
# order id). order-status is killed with SIGKILL once a quarter of the orders
# are delivered, started again, and killed and started once more while it
# works through the backlog. Once every order is DELIVERED the state must be
# what one clean run gives: one history row per step, no rejected row (a
# redelivered update must be dropped by the inbox, not rejected as illegal),
# version 6, stock = initial - ordered, every outbox row published (the
# relay's sweep republishes what a crash left) and one ce_id per (order,
# version) on order.status. Where each kill landed is printed, not asserted.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

N=100
of_setup ucrash
of_topics_create
T_STATUS="${OF_PREFIX}order.status"
sql "insert into customers (id, name) values ('c-1', 'Ada'), ('c-2', 'Brian'), ('c-3', 'Chen');
     insert into products (id, name, price_cents, stock) values
         ('k-1', 'Bolt', 250, 100000), ('k-2', 'Crate', 1999, 100000), ('k-3', 'Nut', 5, 100000),
         ('k-4', 'Lathe', 120000, 100000), ('k-5', 'Oil', 75, 100000);
     create table expected_lines (ce_id text not null, product_id text not null, quantity integer not null);
     -- Orders whose update stream the publisher has sent.
     create table sent (order_id uuid primary key, correlation_id text not null);
     create view changed as
         select k.partition, k.\"offset\", k.headers->>'ce_id' ce_id, k.value::jsonb d
         from kafka_records k
         where k.topic = '$T_STATUS' and k.headers->>'ce_type' = 'order.status.changed'"

# Short sweeps so that rows a crash left unpublished go out soon; a short
# session so that the group does not wait long for a killed member; small
# batches so that a kill lands between many commits.
env=(ORDERFLOW_OUTBOX_SWEEP_GRACE=3s KAFKA_MESSAGE_TIMEOUT_MS=2500 ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s ORDERFLOW_BATCH_SIZE=20
    KAFKA_SESSION_TIMEOUT_MS=6000 ORDERFLOW_HTTP_PORT=0)
of_worker_start oc order-created "${env[@]}"
of_worker_start os order-status "${env[@]}"
for ((i = 0; i < 600; i++)); do
    [ "$(of_worker_partitions oc)" -eq 6 ] && [ "$(of_worker_partitions os)" -eq 6 ] && break
    sleep 0.1
done

# The test stack's PostgreSQL must stay up; if it goes away (another run's
# fixture restarting the shared test stack), stop at once instead of waiting
# out every timeout.
db_alive() {
    sql "select 1" >/dev/null 2>&1 && return 0
    echo "# PostgreSQL of the test stack ($PGPORT) is unreachable: giving up"
    exit 1
}

# One structured-mode CloudEvent per line, "key<TAB>event", for kcat -K.
structured() { # structured <key> <ce_id> <type> <source> <data JSON>
    printf '%s\t{"specversion":"1.0","id":"%s","type":"%s","source":"test/%s","time":"%s","datacontenttype":"application/json","data":%s}\n' \
        "$1" "$2" "$3" "$4" "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$5"
}
publish_lines() { # publish_lines <topic> <file>
    kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$OF_PREFIX$1" -K $'\t' \
        -H content-type=application/cloudevents+json <"$2"
}

RANDOM=11
: >"$OF_WORK/created.txt"
: >"$OF_WORK/lines.tsv"
for ((i = 1; i <= N; i++)); do
    id="$OF_TAG-o-$i"
    items=
    for ((k = RANDOM % 3 + 1; k > 0; k--)); do
        p="k-$((RANDOM % 5 + 1))"
        q=$((RANDOM % 3 + 1))
        items+="${items:+,}{\"product_id\":\"$p\",\"quantity\":$q}"
        printf '%s\t%s\t%s\n' "$id" "$p" "$q" >>"$OF_WORK/lines.tsv"
    done
    structured "$id" "$id" order.created shop "{\"customer_id\":\"c-$((i % 3 + 1))\",\"items\":[$items]}" \
        >>"$OF_WORK/created.txt"
done
psql "$OF_URL" -XAtq -v ON_ERROR_STOP=1 -c "copy expected_lines from stdin" <"$OF_WORK/lines.tsv"
publish_lines order.created "$OF_WORK/created.txt"

# The publisher: every order confirmed (or further) whose stream is not sent
# yet gets PAID, SHIPPED, DELIVERED now. It stops once all N are sent.
publisher() {
    local batch="$OF_WORK/updates.txt" rows id corr i
    for ((i = 0; i < 3000; i++)); do
        rows=$(sql "select o.id || ' ' || o.correlation_id from orders o
                    where o.status not in ('CREATED', 'INVENTORY_RESERVED')
                      and not exists (select 1 from sent s where s.order_id = o.id)") || db_alive
        if [ -z "$rows" ]; then
            [ "$(sql "select count(*) from sent" || true)" = "$N" ] && return 0
            sleep 0.2
            continue
        fi
        : >"$batch"
        while read -r id corr; do
            structured "$id" "$corr-P" order.status.update payments "{\"order_id\":\"$id\",\"status\":\"PAID\"}"
            structured "$id" "$corr-S" order.status.update shipping "{\"order_id\":\"$id\",\"status\":\"SHIPPED\"}"
            structured "$id" "$corr-D" order.status.update shipping "{\"order_id\":\"$id\",\"status\":\"DELIVERED\"}"
        done <<<"$rows" >"$batch"
        # A failed call is retried whole; a copy that did get through is a
        # duplicate ce_id, which the inbox drops.
        publish_lines order.status "$batch" || continue
        sql "insert into sent values $(while read -r id corr; do printf "('%s', '%s')," "$id" "$corr"; done <<<"$rows" |
            sed 's/,$//')"
    done
    echo "# publisher gave up"
    return 1
}
publisher &
OF_PIDS[publisher]=$!

progress() {
    sql "select count(*) filter (where status in ('CREATED', 'INVENTORY_RESERVED')) || ' in OrderProcess, ' ||
                count(*) filter (where status = 'CONFIRMED') || ' CONFIRMED, ' ||
                count(*) filter (where status = 'PAID') || ' PAID, ' ||
                count(*) filter (where status = 'SHIPPED') || ' SHIPPED, ' ||
                count(*) filter (where status = 'DELIVERED') || ' DELIVERED; ' ||
                (select count(*) from sent) || ' streams sent' from orders"
}
kill9() {
    of_worker_kill os
    echo "# SIGKILL order-status: $(progress)"
}
# Kills order-status right after it has applied <n> updates since its last
# start, while the rest of the streams wait on Kafka (its log says when; the
# log is read closely because the streams go fast). A short random delay
# lets the kill land inside a batch as well as between two.
kill_after_updates() { # kill_after_updates <n>
    local log="$OF_WORK/os.log" start i
    start=$(grep -n '^=== .*: start ' "$log" | tail -n 1 | cut -d: -f1)
    for ((i = 0; i < 3000; i++)); do
        if ((i % 50 == 0)); then db_alive; fi
        [ "$(tail -n +"$start" "$log" | grep -c '"msg":"event applied (order.status.update)"')" -ge "$1" ] && break
        sleep 0.02
    done
    sleep "0.0$((RANDOM % 5))"
    kill9
}
applied="select count(*) from execution_history where step in ('RecordPayment', 'RecordShipment', 'RecordDelivery')"
kill_after_updates $((3 * N / 5))
sleep 1
of_worker_start os order-status "${env[@]}"
# Once more soon after it has started on the backlog.
left=$((3 * N - $(sql "$applied")))
if [ "$left" -gt 20 ]; then
    kill_after_updates 10
    of_worker_start os order-status "${env[@]}"
else
    echo "# no second kill: $left update(s) left"
fi

db_alive
wait "${OF_PIDS[publisher]}" || true
unset "OF_PIDS[publisher]"
db_alive
wait_for "select count(*) = $N and bool_and(status = 'DELIVERED') from orders" 180 || true
echo "# at the end: $(progress)"
db_alive
wait_for "select count(*) = count(published_at) from outbox" 120 || true
of_kafka_wait order.status \
    "select count(*) = 0 from outbox b where b.topic = '$T_STATUS' and not exists (select 1 from changed c
     where c.ce_id = b.id::text)" 120 || true
echo "# $(sql "select count(*) - count(distinct ce_id) from changed") duplicate status records on Kafka," \
    "$(sql "select count(*) from outbox where attempts > 0") outbox rows republished by the sweep," \
    "$(grep -c '"msg":"duplicate event skipped"' "$OF_WORK/os.log" || true) redeliveries skipped by order-status"

check "$N orders, all DELIVERED at version 6 with delivered_at" "$N $N" \
    "$(sql "select count(*) || ' ' || count(*) filter (where status = 'DELIVERED' and version = 6
            and delivered_at is not null and status_reason is null) from orders")"
check "every update stream was sent once" "$N" "$(sql "select count(*) from sent")"
check "no rejected or ignored history row" 0 \
    "$(sql "select count(*) from execution_history where outcome <> 'applied'")"
check "OrderProcess history: CreateOrder, UpdateInventory, OrderCompleted, once each" "$N" \
    "$(sql "select count(*) from (select string_agg(h.seq || ':' || h.step, ',' order by h.seq) sig
            from executions e join execution_history h on h.execution_id = e.id
            where e.machine = 'OrderProcess' group by e.id) x
            where sig = '1:CreateOrder,2:UpdateInventory,3:OrderCompleted'")"
check "OrderUpdate history: Start, then one row per update, by its ce_id" "$N" \
    "$(sql "select count(*) from (select o.correlation_id c, string_agg(h.seq || ':' || h.step || ':' ||
                   coalesce(h.event_id, '-'), ',' order by h.seq) sig
            from orders o join executions e on e.order_id = o.id and e.machine = 'OrderUpdate'
            join execution_history h on h.execution_id = e.id group by o.id) x
            where sig like '1:Start:%' and substr(sig, strpos(sig, ',2:')) =
                  ',2:RecordPayment:' || c || '-P,3:RecordShipment:' || c || '-S,4:RecordDelivery:' || c || '-D'")"
check "history rows in all: 7 per order" "$((7 * N))" "$(sql "select count(*) from execution_history")"
check "executions: OrderProcess and OrderUpdate SUCCEEDED, one each per order" "$N $N" \
    "$(sql "select count(*) filter (where machine = 'OrderProcess' and status = 'SUCCEEDED') || ' ' ||
                   count(*) filter (where machine = 'OrderUpdate' and status = 'SUCCEEDED'
                                    and current_state = 'DELIVERED') from executions")"
check "payment deadlines: all cancelled by the payment, none fired" "$N $N 0" \
    "$(sql "select count(*) || ' ' || count(cancelled_at) || ' ' || count(fired_at) from deadlines")"
check "inbox of order-status: each update ce_id once" "$((3 * N))" \
    "$(sql "select count(*) from inbox i join sent s on i.ce_id in (s.correlation_id || '-P',
            s.correlation_id || '-S', s.correlation_id || '-D') where i.consumer = 'order-status'")"
check "stock = initial - ordered quantities, every line still reserved" \
    "$(sql "select string_agg(p.id || '=' || (100000 - coalesce(x.q, 0)), ' ' order by p.id) from products p
            left join (select product_id, sum(quantity) q from expected_lines group by 1) x
            on x.product_id = p.id") 0" \
    "$(sql "select string_agg(id || '=' || stock, ' ' order by id) from products") $(
        sql "select count(*) from order_items where not reserved")"
check "no refunds, no dead letters" "0 0" \
    "$(sql "select (select count(*) from refunds) || ' ' || (select count(*) from dead_letters)")"
check "every outbox row published, six status events per order" "$((6 * N)) 0" \
    "$(sql "select count(*) || ' ' || count(*) filter (where published_at is null) from outbox")"
check "every outbox row is on Kafka" 0 \
    "$(sql "select count(*) from outbox b where not exists (select 1 from changed c where c.ce_id = b.id::text)")"
check "order.status: versions 1..6 per order, one ce_id each, the right statuses" "$N" \
    "$(sql "select count(*) from (select o, string_agg(st || '/' || n, ',' order by v) s
            from (select d->>'order_id' o, (d->>'version')::int v, count(distinct ce_id) n,
                         string_agg(distinct d->>'status', '+') st from changed group by 1, 2) y group by o) x
            where s = 'CREATED/1,INVENTORY_RESERVED/1,CONFIRMED/1,PAID/1,SHIPPED/1,DELIVERED/1'")"
of_finish
