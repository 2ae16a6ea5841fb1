#!/usr/bin/env bash
# test_stack_smoke.sh: checks the local stack the "stack" fixture brought up:
# `ops/stack env` evaluates to the test stack, Postgres answers, Kafka has every
# topic with the configured partition count, the migrations are recorded,
# a second `orderctl migrate up` changes nothing, and a second `ops/stack up`
# is quick and restarts nothing.
set -euo pipefail

: "${ORDERFLOW_SOURCE_DIR:?runs under ctest (ORDERFLOW_SOURCE_DIR is unset)}"
: "${ORDERFLOW_BUILD_DIR:?ORDERFLOW_BUILD_DIR is unset}"
: "${ORDERFLOW_PG_PORT:?}" "${ORDERFLOW_KAFKA_PORT:?}" "${ORDERFLOW_STACK_DIR:?}"
stack="$ORDERFLOW_SOURCE_DIR/ops/stack"
orderctl="$ORDERFLOW_BUILD_DIR/tools/orderctl/orderctl"
partitions="${ORDERFLOW_PARTITIONS:-6}"

failures=0
pass() { printf 'ok   %s\n' "$*"; }
fail() {
  printf 'FAIL %s\n' "$*"
  failures=$((failures + 1))
}
tmp="$(mktemp -d)"
trap 'rm -rf -- "$tmp"' EXIT

# 1. `ops/stack env` evaluates, in a clean environment, to this stack.
env_out="$("$stack" env)"
# shellcheck disable=SC2016 # the inner shell expands these.
got="$(env -i PATH="$PATH" bash -c 'set -eu; eval "$1"; printf "%s|%s|%s|%s|%s|%s|%s" \
  "$DATABASE_URL" "$KAFKA_BOOTSTRAP_SERVERS" "$PGHOST" "$PGPORT" "$PGUSER" "$PGDATABASE" \
  "$ORDERFLOW_STACK_DIR"' _ "$env_out")" || got="(eval failed)"
want="postgresql://orderflow@127.0.0.1:$ORDERFLOW_PG_PORT/orderflow|127.0.0.1:$ORDERFLOW_KAFKA_PORT|127.0.0.1|$ORDERFLOW_PG_PORT|orderflow|orderflow|$ORDERFLOW_STACK_DIR"
if [[ "$got" == "$want" ]]; then
  pass "ops/stack env evaluates to the test stack"
else
  fail "ops/stack env: got \"$got\", want \"$want\""
fi
eval "$env_out"

# 2. Postgres answers as orderflow on the orderflow database, with the durable settings.
got="$(psql -X -At "$DATABASE_URL" -c \
  "select 1, current_user, current_database(), current_setting('fsync'), current_setting('synchronous_commit')" 2>&1)" || true
if [[ "$got" == "1|orderflow|orderflow|on|on" ]]; then
  pass "psql select 1 as orderflow (fsync and synchronous_commit on)"
else
  fail "psql select 1: got \"$got\""
fi

# 3. Kafka lists every topic and dead-letter topic with the configured partitions.
if meta="$(kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -L -J -m 10 2>"$tmp/kcat.err")"; then
  for t in order.created order.status return.requested; do
    for topic in "$t" "$t.dlq"; do
      n="$(jq -r --arg t "$topic" '[.topics[] | select(.topic == $t) | .partitions | length] | first // "absent"' <<<"$meta")"
      if [[ "$n" == "$partitions" ]]; then
        pass "topic $topic has $n partitions"
      else
        fail "topic $topic: partitions $n, want $partitions"
      fi
    done
  done
  if jq -e '[.brokers[] | select(.id == 1)] | length == 1' <<<"$meta" >/dev/null; then
    pass "broker 1 is listed"
  else
    fail "broker 1 is not in the metadata"
  fi
else
  fail "kcat -L failed: $(cat "$tmp/kcat.err")"
fi

# 4. schema_migrations holds exactly the versions of migrations/*.up.sql.
want="$(find "$ORDERFLOW_SOURCE_DIR/migrations" -maxdepth 1 -name '*.up.sql' -printf '%f\n' |
  sed -E 's/^0*([0-9]+)_.*/\1/' | sort -n | paste -sd, -)"
got="$(psql -X -At "$DATABASE_URL" -c 'select string_agg(version::text, $$,$$ order by version) from schema_migrations' 2>&1)" || true
if [[ -n "$want" && "$got" == "$want" ]]; then
  pass "schema_migrations has versions $got"
else
  fail "schema_migrations: got \"$got\", want \"$want\""
fi

# 5. A second `orderctl migrate up` applies nothing and changes nothing.
# pg_dump >= 15.14 wraps its output in \restrict/\unrestrict lines with a random key: drop them.
dump() {
  pg_dump --schema-only --no-owner "$DATABASE_URL" 2>"$tmp/pg_dump.err" >"$1.raw" &&
    grep -Ev '^\\(un)?restrict ' "$1.raw" >"$1" &&
    psql -X -At "$DATABASE_URL" -c 'select version, checksum, applied_at from schema_migrations order by version' >>"$1"
}
if [[ ! -x "$orderctl" ]]; then
  fail "orderctl not built: $orderctl"
elif ! dump "$tmp/before.sql"; then
  fail "pg_dump before: $(cat "$tmp/pg_dump.err")"
else
  status=0
  out="$("$orderctl" migrate up --dir "$ORDERFLOW_SOURCE_DIR/migrations" 2>&1)" || status=$?
  if [[ $status -eq 0 && "$out" == *"nothing to apply"* ]]; then
    pass "second migrate up: $out"
  else
    fail "second migrate up (exit $status): $out"
  fi
  if ! dump "$tmp/after.sql"; then
    fail "pg_dump after: $(cat "$tmp/pg_dump.err")"
  elif diff -u "$tmp/before.sql" "$tmp/after.sql" >"$tmp/schema.diff"; then
    pass "schema and schema_migrations unchanged ($(wc -l <"$tmp/before.sql") lines of dump)"
  else
    fail "second migrate up changed the schema:"
    head -n 40 "$tmp/schema.diff"
  fi
fi

# 6. A second `ops/stack up` succeeds quickly and restarts nothing.
pids() { "$stack" status | awk '$1 == "postgres" || $1 == "kafka" { print $1, $2, $3, $4 }'; }
before="$(pids)"
start=$(date +%s%3N)
if "$stack" up --no-workers --no-build >"$tmp/up.log" 2>&1; then
  ms=$(($(date +%s%3N) - start))
  after="$(pids)"
  if ((ms > 20000)); then
    fail "second ops/stack up took $ms ms (want < 20000)"
  elif [[ "$before" != "$after" ]]; then
    fail "second ops/stack up restarted something: before \"$before\", after \"$after\""
  else
    pass "second ops/stack up in $ms ms, same processes ($(tr '\n' ' ' <<<"$after"))"
  fi
else
  fail "second ops/stack up failed:"
  cat "$tmp/up.log"
fi

if ((failures > 0)); then
  printf '%d check(s) failed\n' "$failures"
  exit 1
fi
echo "all checks passed"
