#!/usr/bin/env bash
# test_secrets.sh: a password in DATABASE_URL appears in no log line.
#
# The password "p%@ss@w0rd" (a '%' and two '@', percent-encoded in the URL)
# is given in the user info and again as ?password=. A worker processes an
# order with it, then another runs against a port where nothing listens (so
# it logs connection failures for a while), and a third gets a URL whose
# password libpq cannot parse (an invalid percent-encoding, which libpq's
# own message would quote): it must exit 78 naming the setting, not its
# value. orderctl gets the same bad URL. No log line and no output holds the
# password in any of its spellings. Last, a worker whose outbox sweep grace is
# not longer than the producer's message timeout refuses to start.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

of_setup secrets
of_topics_create
sql "insert into customers (id, name) values ('c-1', 'Ada');
     insert into products (id, name, price_cents, stock) values ('p-1', 'Bolt', 300, 100)"
pw_enc='p%25%40ss%40w0rd'
url="postgresql://${PGUSER:-orderflow}:${pw_enc}@127.0.0.1:${PGPORT}/${OF_DB}?sslmode=disable&password=${pw_enc}"
dead_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dead_url="postgresql://${PGUSER:-orderflow}:${pw_enc}@127.0.0.1:${dead_port}/${OF_DB}?password=${pw_enc}"
bad_url="postgresql://${PGUSER:-orderflow}:p%zzs3cret@127.0.0.1:${PGPORT}/${OF_DB}"

of_worker_start oc order-created DATABASE_URL="$url"
of_publish order.created "$OF_TAG-k" "$OF_TAG-o" order.created \
    '{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":1}]}'
wait_for "select count(*) = 1 from orders where correlation_id = '$OF_TAG-o'" 60 || true
check "the worker with the password works" 1 \
    "$(sql "select count(*) from orders where correlation_id = '$OF_TAG-o'")"
LOG_LEVEL=debug DATABASE_URL="$url" "$OF_ORDERCTL" migrate status >"$OF_WORK/orderctl-debug.log" 2>&1 || true
check "orderctl logs its configuration with the password masked" yes \
    "$(grep -q 'config database-url = postgresql://.*:\*\*\*\*@127.0.0.1.*password=\*\*\*\*' \
        "$OF_WORK/orderctl-debug.log" && echo yes || echo no)"
of_worker_stop oc

of_worker_start dead order-created DATABASE_URL="$dead_url" ORDERFLOW_GROUP_ID="$OF_TAG-dead"
for ((i = 0; i < 50; i++)); do
    [ "$(grep -cF 'connection \"batch\" lost' "$OF_WORK/dead.log" || true)" -ge 3 ] && break
    sleep 0.2
done
check "the worker without a server logs its connection failures" yes \
    "$([ "$(grep -cF 'connection \"batch\" lost' "$OF_WORK/dead.log" || true)" -ge 3 ] && echo yes || echo no)"
of_worker_stop dead

of_worker_start bad order-created DATABASE_URL="$bad_url" ORDERFLOW_GROUP_ID="$OF_TAG-bad"
rc=0
for ((i = 0; i < 100; i++)); do
    kill -0 "${OF_PIDS[bad]}" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "${OF_PIDS[bad]}" 2>/dev/null; then
    kill -KILL "${OF_PIDS[bad]}" 2>/dev/null || true
    wait "${OF_PIDS[bad]}" 2>/dev/null || true
    rc="still running after 10 s"
else
    wait "${OF_PIDS[bad]}" || rc=$?
fi
unset "OF_PIDS[bad]"
check "a URL libpq cannot parse stops the worker with exit 78" 78 "$rc"
check "saying which setting is wrong" yes \
    "$(grep -q 'invalid database-url' "$OF_WORK/bad.log" && echo yes || echo no)"
orc=0
DATABASE_URL="$bad_url" "$OF_ORDERCTL" migrate status >"$OF_WORK/orderctl.log" 2>&1 || orc=$?
check "orderctl refuses it with exit 78" 78 "$orc"

# Not a secret, but refused at start the same way: a sweep grace period not
# longer than the producer's message timeout would resend rows in flight.
of_worker_start grace order-created ORDERFLOW_OUTBOX_SWEEP_GRACE=5s KAFKA_MESSAGE_TIMEOUT_MS=20000 \
    ORDERFLOW_GROUP_ID="$OF_TAG-grace"
grc=0
wait "${OF_PIDS[grace]}" || grc=$?
unset "OF_PIDS[grace]"
check "a sweep grace not longer than message.timeout.ms stops the worker with exit 78" 78 "$grc"
check "naming both settings" yes \
    "$(grep -q 'outbox-sweep-grace (5000 ms) must be longer than the producer.s message.timeout.ms (20000 ms)' \
        "$OF_WORK/grace.log" && echo yes || echo no)"

found=$(cat "$OF_WORK"/*.log | grep -c -e 'p%@ss' -e 'ss@w0rd' -e 'p%25%40ss' -e 'ss%40w0rd' \
    -e 'p%zz' -e 's3cret' || true)
check "the password is in no log line, in any spelling" 0 "$found"
of_finish
