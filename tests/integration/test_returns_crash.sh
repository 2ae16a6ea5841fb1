#!/usr/bin/env bash
# test_returns_crash.sh: ReturnRefund survives SIGKILL of return-requested and order-status.
#
# 30 orders (1-3 lines of 4 products) are made DELIVERED, their prices then
# raised, and a return of everything bought is requested for each. Three
# kills land mid-chain by construction (a lock held by the test stops a step;
# the worker is killed while its transaction waits there): return-requested
# in ProcessReturn (stock), again in ProcessRefund (the refund row), and
# order-status in ApplyReturn, which then stays down while more updates queue
# up for it. Once every return is REFUND_COMPLETED the state must be what one
# clean run gives: one return per request, one refund row per return at the
# snapshot price, stock back exactly once, one history row per step
# (ReturnRefund and ApplyReturn), every order RETURNED, inbox rows matching
# the events, every outbox row published, and on Kafka one ce_id per (return,
# version); the same ce_id twice is allowed (the relay is at-least-once).
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup retcrash
of_topics_create
T_STATUS="${OF_PREFIX}order.status"
T_RR="${OF_PREFIX}return.requested"
N=30
sql "insert into customers (id, name) values ('c-1', 'Ada'), ('c-2', 'Brian');
     insert into products (id, name, price_cents, stock) values
         ('q-1', 'Kettle', 1250, 500), ('q-2', 'Mug', 399, 500), ('q-3', 'Spoon', 75, 500),
         ('q-4', 'Lathe', 120000, 500);
     create table expected_lines (name text not null, product_id text not null, quantity integer not null);
     create view rchanged as
         select k.partition, k.\"offset\", k.headers->>'ce_id' ce_id, k.value::jsonb d from kafka_records k
         where k.topic = '$T_RR' and k.headers->>'ce_type' = 'return.status.changed';
     create view oupdates as
         select k.partition, k.\"offset\", k.headers->>'ce_id' ce_id, k.value::jsonb d from kafka_records k
         where k.topic = '$T_STATUS' and k.headers->>'ce_type' = 'order.status.update'
           and k.headers->>'ce_source' = 'orderflow/return-requested'"

# Short sweeps so that rows a crash left unpublished go out soon; a short
# session so that the group does not wait long for a killed member; small
# batches so that a kill finds work in flight.
env=(ORDERFLOW_HTTP_PORT=0 ORDERFLOW_OUTBOX_SWEEP_GRACE=3s KAFKA_MESSAGE_TIMEOUT_MS=2500 ORDERFLOW_OUTBOX_SWEEP_INTERVAL=1s
    ORDERFLOW_BATCH_SIZE=5 KAFKA_SESSION_TIMEOUT_MS=6000)
of_worker_start oc order-created "${env[@]}"
of_worker_start os order-status "${env[@]}"
of_worker_start rr return-requested "${env[@]}"
for ((i = 0; i < 600; i++)); do
    [ "$(of_worker_partitions oc)" -eq 6 ] && [ "$(of_worker_partitions os)" -eq 6 ] &&
        [ "$(of_worker_partitions rr)" -eq 6 ] && break
    sleep 0.1
done

# --- 30 delivered orders ------------------------------------------------------------------
RANDOM=11
: >"$OF_WORK/lines.tsv"
for ((i = 1; i <= N; i++)); do
    items=
    for p in q-1 q-2 q-3 q-4; do
        if ((RANDOM % 2 == 0)) || { [ "$p" = q-4 ] && [ -z "$items" ]; }; then
            q=$((RANDOM % 3 + 1))
            items+="${items:+,}{\"product_id\":\"$p\",\"quantity\":$q}"
            printf 'o-%s\t%s\t%s\n' "$i" "$p" "$q" >>"$OF_WORK/lines.tsv"
        fi
    done
    printf '%s\n' "$items" >"$OF_WORK/items-$i.json"
    of_publish order.created "$OF_TAG-o-$i" "$OF_TAG-o-$i" order.created \
        "{\"customer_id\":\"c-$((i % 2 + 1))\",\"items\":[$items]}"
done
psql "$OF_URL" -XAtq -v ON_ERROR_STOP=1 -c "copy expected_lines from stdin" <"$OF_WORK/lines.tsv"
wait_for "select count(*) = $N and bool_and(status = 'CONFIRMED') from orders" 120 || true
sql "create table stock0 as select id, stock from products;
     update products set price_cents = price_cents * 2 + 7" >/dev/null
mapfile -t ids < <(sql "select id from orders order by replace(correlation_id, '$OF_TAG-o-', '')::int")
check "$N orders CONFIRMED" "$N $N" "$(sql "select count(*) from orders where status = 'CONFIRMED'") ${#ids[@]}"
v=4
for st in PAID SHIPPED DELIVERED; do
    for ((i = 1; i <= N; i++)); do
        x=${ids[i - 1]}
        of_publish order.status "$x" "$OF_TAG-u-$i-$st" order.status.update \
            "{\"order_id\":\"$x\",\"status\":\"$st\",\"expected_version\":$((v - 1))}"
    done
    wait_for "select count(*) = $N from orders where status = '$st' and version = $v" 120 || true
    v=$((v + 1))
done
check "every order DELIVERED at version 6" "$N" "$(sql "select count(*) from orders where status = 'DELIVERED' and version = 6")"

# --- Returns, with kills -------------------------------------------------------------------------
# Each kill lands mid-chain by construction: a session of the test holds
# locks that one step's statement needs (hold), the worker's batch
# transaction waits in that statement, and the worker is killed while it
# waits. Row locks where they single out the step; the refunds table lock is
# taken only once the worker has prepared its statements (preparing an insert
# needs a lock on the table too). Released soon after the kill, the dead
# worker's transaction may still commit once it gets the locks (its COMMIT
# was already sent): work done, offsets not stored, outbox rows not
# published; the restarted worker must redo nothing.
sql "create table released (name text primary key)"
hold() { # hold <name> <statement taking locks>: keeps them until release <name>, then rolls back
    psql "$OF_URL" -XAtq -v ON_ERROR_STOP=1 >/dev/null <<SQL &
set application_name = 'hold-$1';
begin;
$2;
do \$\$ begin
    for i in 1 .. 1200 loop
        exit when exists (select 1 from released where name = '$1');
        perform pg_sleep(0.05);
    end loop;
end \$\$;
rollback;
SQL
    OF_PIDS[hold-$1]=$!
    wait_for "select count(*) = 1 from pg_stat_activity where application_name = 'hold-$1'
              and state = 'active' and query like 'do %'" 30 || true
}
release() { # release <name>
    local rc=0
    sql "insert into released values ('$1')"
    wait "${OF_PIDS[hold-$1]}" || rc=$?
    unset "OF_PIDS[hold-$1]"
    [ "$rc" -eq 0 ] || echo "# the session holding $1 exited with status $rc"
}
blocked_by() { # blocked_by <hold name> <query like>: SQL, true while a worker's statement waits for the hold
    echo "select exists (select 1 from pg_stat_activity a join pg_stat_activity hh
          on hh.pid = any(pg_blocking_pids(a.pid))
          where hh.application_name = 'hold-$1' and a.application_name = 'orderflow'
            and a.query like '$2')"
}
steps="coalesce(sum(version), 0)"
where() { # where the chain is: returns, steps done, refunds, orders RETURNED, updates unapplied
    sql "select (select count(*) from returns) || ' returns, ' ||
                (select $steps from returns) || '/' || $((5 * N)) || ' steps, ' ||
                (select count(*) from refunds) || ' refunds, ' ||
                (select count(*) from orders where status = 'RETURNED') || ' orders RETURNED, ' ||
                (select count(*) from returns where status = 'REFUND_COMPLETED') -
                (select count(*) from orders where status = 'RETURNED') || ' updates not applied'"
}
since_start() { # since_start <name>: its log since its last start
    local log="$OF_WORK/$1.log" start
    start=$(grep -n '^=== .*: start ' "$log" | tail -n 1 | cut -d: -f1 || true)
    tail -n +"${start:-1}" "$log"
}
kill_blocked() { # kill_blocked <worker name> <hold name> <step> <its statement, like>
    local blocked=no
    wait_for "$(blocked_by "$2" "$4")" 120 && blocked=yes
    check "$1 killed while its transaction waits in $3" yes "$blocked"
    echo "# SIGKILL $1 (waiting in $3): $(where)"
    of_worker_kill "$1"
}

# 1. return-requested in ProcessReturn (stock): all requests published meanwhile.
hold products "select 1 from products for update"
for ((i = 1; i <= N; i++)); do
    x=${ids[i - 1]}
    of_publish return.requested "$x" "$OF_TAG-q-$i" return.requested \
        "{\"order_id\":\"$x\",\"items\":[$(cat "$OF_WORK/items-$i.json")],\"reason\":\"crash $i\"}"
done
kill_blocked rr products ProcessReturn 'update products %'
of_worker_start rr return-requested "${env[@]}"
for ((i = 0; i < 600; i++)); do
    since_start rr | jq -R -r 'fromjson? | .msg' | grep -qx 'postgres connection "batch" ready' && break
    sleep 0.1
done
hold refunds "lock table refunds in share mode"
release products
# 2. return-requested in ProcessRefund (the refund row).
kill_blocked rr refunds ProcessRefund 'insert into refunds %'
hold apply "select 1 from executions where machine = 'OrderUpdate' for update"
release refunds
of_worker_start rr return-requested "${env[@]}"
# 3. order-status in ApplyReturn; it stays down until more updates wait for it.
kill_blocked os apply ApplyReturn '%update executions %'
release apply
wait_for "select count(*) filter (where status = 'REFUND_COMPLETED') >= 10 or count(*) filter
          (where status = 'REFUND_COMPLETED') = $N from returns" 120 || true
echo "# order-status down: $(where)"
of_worker_start os order-status "${env[@]}"

wait_for "select count(*) = $N and bool_and(status = 'REFUND_COMPLETED') from returns" 180 || true
wait_for "select count(*) = $N from orders where status = 'RETURNED'" 120 || true
wait_for "select count(*) = count(published_at) from outbox" 120 || true
wait_for "select count(*) = 0 from outbox b where b.topic in ('$T_RR', '$T_STATUS') and $(of_sql_leaves_inbox b)
          and not exists (select 1 from inbox i where i.ce_id = b.id::text and i.consumer =
              case b.topic when '$T_RR' then 'return-requested' else 'order-status' end)" 120 || true
of_kafka_load return.requested >/dev/null
of_kafka_load order.status >/dev/null
echo "# at the end: $(where)"
echo "# $(sql "select count(*) - count(distinct ce_id) from rchanged") duplicate return events on Kafka," \
    "$(sql "select count(*) from outbox where attempts > 0") outbox rows republished by the sweep," \
    "$(cat "$OF_WORK"/rr.log "$OF_WORK"/os.log | grep -c '"msg":"duplicate event skipped"' || true) redeliveries skipped by the inbox"

# Expected per return (= per order): its lines at the price snapshot.
sql "create table want as select o.id order_id, sum(e.quantity) units,
            sum(e.quantity * i.unit_price_cents) refund
     from expected_lines e join orders o on o.correlation_id = '$OF_TAG-' || e.name
     join order_items i on i.order_id = o.id and i.product_id = e.product_id group by o.id" >/dev/null
check "one return per request, each REFUND_COMPLETED at version 5" "$N $N $N" \
    "$(sql "select count(*) || ' ' || count(distinct source_event_id) || ' ' ||
                   count(*) filter (where status = 'REFUND_COMPLETED' and version = 5) from returns")"
check "refund_cents = the order's snapshot (= its total), not today's prices" "$N" \
    "$(sql "select count(*) from returns r join want w on w.order_id = r.order_id
            join orders o on o.id = r.order_id where r.refund_cents = w.refund and w.refund = o.total_cents")"
check "exactly one refund row per return, at its refund_cents" "$N $N $N" \
    "$(sql "select count(*) || ' ' || count(distinct f.return_id) || ' ' || count(*) filter
                   (where f.amount_cents = r.refund_cents and f.order_id = r.order_id and f.cause = 'RETURN')
            from refunds f join returns r on r.id = f.return_id")"
check "no refund row without a return" 0 "$(sql "select count(*) from refunds where return_id is null")"
check "stock = stock after ordering + every returned unit once (= the initial 500)" \
    "$(sql "select string_agg(s.id || '=' || (s.stock + coalesce(x.q, 0)), ' ' order by s.id) from stock0 s
            left join (select product_id, sum(quantity) q from expected_lines group by 1) x on x.product_id = s.id")" \
    "$(sql "select string_agg(id || '=' || stock, ' ' order by id) from products")"
check "and that is the initial stock" "q-1=500 q-2=500 q-3=500 q-4=500" \
    "$(sql "select string_agg(id || '=' || stock, ' ' order by id) from products")"
check "one ReturnRefund per return, SUCCEEDED in REFUND_COMPLETED" "$N $N" \
    "$(sql "select count(*) || ' ' || count(*) filter (where e.status = 'SUCCEEDED' and e.current_state = 'REFUND_COMPLETED')
            from executions e join returns r on r.id = e.return_id where e.machine = 'ReturnRefund'")"
check "exactly one history row per step, in order" "$N" \
    "$(sql "select count(*) from (select string_agg(h.seq || ':' || h.step || ':' || h.outcome, ',' order by h.seq) s
            from executions e join execution_history h on h.execution_id = e.id
            where e.machine = 'ReturnRefund' group by e.id) x
            where s = '1:InitiateReturn:applied,2:ProcessReturn:applied,3:InitiateRefund:applied,4:ProcessRefund:applied,5:RefundCompleted:applied'")"
check "ReturnRefund history rows in all: 5 per return" "$((5 * N))" \
    "$(sql "select count(*) from execution_history h join executions e on e.id = h.execution_id
            where e.machine = 'ReturnRefund'")"
check "every order RETURNED at version 7" "$N" "$(sql "select count(*) from orders where status = 'RETURNED' and version = 7")"
check "OrderUpdate: one ApplyReturn per order, nothing rejected or repeated" "$N" \
    "$(sql "select count(*) from (select string_agg(h.step || ':' || h.outcome, ',' order by h.seq) s
            from executions e join execution_history h on h.execution_id = e.id
            where e.machine = 'OrderUpdate' and e.status = 'SUCCEEDED' and e.current_state = 'RETURNED'
            group by e.id) x
            where s = 'Start:applied,RecordPayment:applied,RecordShipment:applied,RecordDelivery:applied,ApplyReturn:applied'")"
# REFUND_COMPLETED drives no step: settled without a transaction, so it has no inbox row.
check "inbox of return-requested: one row per distinct ce_id on return.requested ($N requests + 5 events each) but REFUND_COMPLETED" \
    "$((6 * N)) $((5 * N)) 0" \
    "$(sql "select count(distinct k.headers->>'ce_id') from kafka_records k
            where k.topic = '$T_RR'") $(sql "select count(*) from inbox where consumer = 'return-requested'") $(sql "select count(*)
            from inbox i join rchanged c on c.ce_id = i.ce_id where i.consumer = 'return-requested'
            and c.d->>'status' = 'REFUND_COMPLETED'")"
check "every outbox row published and on Kafka" "0 0" \
    "$(sql "select count(*) from outbox where published_at is null") $(sql "select count(*) from outbox b
            where b.topic in ('$T_RR', '$T_STATUS') and not exists (select 1 from kafka_records k
            where k.topic = b.topic and k.headers->>'ce_id' = b.id::text)")"
check "every (return, version) has exactly one ce_id; versions 1..5 per return" "0 $((5 * N))" \
    "$(sql "select count(*) filter (where n > 1) || ' ' || count(*) from (select d->>'return_id', d->>'version',
            count(distinct ce_id) n from rchanged group by 1, 2) x")"
check "one order.status.update per order (one distinct ce_id), RETURNED" "$N $N" \
    "$(sql "select count(distinct ce_id) || ' ' || count(distinct d->>'order_id') filter (where d->>'status' = 'RETURNED')
            from oupdates")"
check "nothing dead-lettered" 0 "$(sql "select count(*) from dead_letters")"
of_finish
