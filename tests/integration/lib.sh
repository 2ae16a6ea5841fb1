# lib.sh: shared helpers of the shell integration tests (sourced, never run).
#
# A test script does
#     set -euo pipefail
#     . "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
#     of_setup <short name>
# and gets its own scratch database (created with createdb, migrated with
# `orderctl migrate up`), its own topic prefix and consumer groups, a temp
# dir for the worker logs, and an EXIT trap that kills every worker still
# running and drops the database. Everything runs against the real stack the
# ctest fixture provides (environment listed in CMakeLists.txt).
#
# Variables set by of_setup:
#   OF_NAME   the short name given (ce_source of test events: test/<name>)
#   OF_TAG    unique run tag; ce_ids and consumer groups start with it
#   OF_PREFIX topic prefix ("<tag>."), passed to workers as ORDERFLOW_TOPIC_PREFIX
#   OF_DB     scratch database name; OF_URL its libpq URI
#   OF_WORK   temp dir: worker logs <name>.log, kcat dumps
#
# Helpers (topics are given without the prefix; the helpers add it):
#   sql QUERY                          runs QUERY in the scratch db, prints rows (unaligned)
#   of_topics_create [TOPIC...]        creates prefixed topics, 6 partitions (default: the contract's)
#   of_worker_start NAME WORKER [VAR=value...]
#                                      starts $ORDERFLOW_BUILD_DIR/workers/WORKER/orderflow-WORKER
#                                      as NAME (group "<tag>-WORKER", LOG_LEVEL=debug), log in
#                                      $OF_WORK/NAME.log (appended across restarts)
#   of_process_start NAME PROGRAM [VAR=value...]
#                                      the same for any program (test workers)
#   of_worker_stop NAME                SIGTERM, wait (60 s), check that it exited 0
#   of_http_wait_ready URL [SECONDS]   waits (10 s) until URL/readyz answers 200
#   of_metric PORT NAME{LABELS}        the value a process serves on PORT/metrics, or "-"
#   of_metric_wait PORT NAME VALUE SECONDS  polls until it serves that value; 1 on timeout
#   of_worker_kill NAME                SIGKILL, wait
#   of_worker_partitions NAME          partitions NAME holds now, from its log
#   of_publish TOPIC KEY CE_ID CE_TYPE JSON [kcat args...]
#                                      one binary-mode CloudEvent (headers ce_*, content-type)
#   of_publish_structured TOPIC KEY JSON
#                                      one structured-mode CloudEvent (JSON is the whole event)
#   of_publish_raw TOPIC KEY VALUE [kcat args...]
#                                      VALUE with only the headers given (-H name=value)
#   of_kafka_load TOPIC                copies every record of TOPIC into the table kafka_records
#                                      (topic, partition, offset, key, value, headers {name: value},
#                                      header_list [name, value, ...]); prints the record count
#   of_kafka_wait TOPIC SQL SECONDS    reloads TOPIC until SQL returns t; 1 on timeout
#   wait_for SQL SECONDS               polls until SQL returns t; 1 on timeout (prints why)
#   check DESCRIPTION EXPECTED ACTUAL  records ok / not ok
#   of_log_tails [LINES]               prints the tail of every worker log
#   of_finish                          stops the workers still running (checking their exit),
#                                      checks the logs for sanitizer reports, prints log tails
#                                      on failure and "N passed, M failed"; returns 1 on failure
#
# OF_KEEP_LOGS=DIR in the environment keeps the worker logs of a run in DIR.
#
# Waiting is for conditions only, with generous timeouts: no assertion here
# depends on how fast anything runs.

: "${ORDERFLOW_BUILD_DIR:?set by ctest}" "${ORDERFLOW_SOURCE_DIR:?set by ctest}"
: "${KAFKA_BOOTSTRAP_SERVERS:?set by ctest}" "${PGPORT:?set by ctest}"

OF_ORDERCTL=$ORDERFLOW_BUILD_DIR/tools/orderctl/orderctl
OF_NAME=
OF_TAG=
OF_PREFIX=
OF_DB=
OF_URL=
OF_WORK=
OF_PASSED=0
OF_FAILED=0
declare -gA OF_PIDS=()

of__cleanup() {
    local status=$? name pid
    for name in "${!OF_PIDS[@]}"; do
        pid=${OF_PIDS[$name]}
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [ "$status" -ne 0 ] && [ -n "$OF_WORK" ] && [ "$OF_FAILED" -eq 0 ]; then
        # An early exit (set -e, a setup step failing): the logs say why.
        echo "--- exited early with status $status ---"
        of_log_tails 40 || true
    fi
    if [ -n "$OF_DB" ]; then
        dropdb --if-exists --force "$OF_DB" >/dev/null 2>&1 || true
    fi
    if [ -n "$OF_WORK" ]; then
        # OF_KEEP_LOGS=DIR keeps the worker logs of the run there (for debugging).
        if [ -n "${OF_KEEP_LOGS:-}" ]; then
            mkdir -p -- "$OF_KEEP_LOGS" && cp -- "$OF_WORK"/*.log "$OF_KEEP_LOGS"/ 2>/dev/null || true
        fi
        rm -rf -- "$OF_WORK"
    fi
}

of_setup() { # of_setup <short name>
    OF_NAME=$1
    OF_TAG="${1}$$x$(date +%s)"
    OF_PREFIX="$OF_TAG."
    OF_DB="of_${OF_TAG}"
    OF_URL="postgresql://${PGUSER:-orderflow}@${PGHOST:-127.0.0.1}:${PGPORT}/${OF_DB}"
    OF_WORK=$(mktemp -d)
    trap of__cleanup EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    createdb "$OF_DB"
    DATABASE_URL=$OF_URL "$OF_ORDERCTL" migrate up --dir "$ORDERFLOW_SOURCE_DIR/migrations" >/dev/null
    # Kafka records copied in for assertions (of_kafka_load); the scratch db is throwaway.
    sql "create table kafka_raw (j jsonb not null);
         create table kafka_records (topic text not null, partition integer not null,
             \"offset\" bigint not null, key text, value text, headers jsonb not null,
             header_list jsonb not null, primary key (topic, partition, \"offset\"))"
    echo "# run tag $OF_TAG, database $OF_DB, topic prefix $OF_PREFIX"
}

sql() { psql "$OF_URL" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

# shellcheck disable=SC2120 # the topics are optional
of_topics_create() { # of_topics_create [TOPIC...]
    "$OF_ORDERCTL" topics create --kafka-bootstrap-servers "$KAFKA_BOOTSTRAP_SERVERS" \
        --topic-prefix "$OF_PREFIX" --partitions 6 "$@" >/dev/null
}

check() { # check <description> <expected> <actual>
    if [ "$2" = "$3" ]; then
        OF_PASSED=$((OF_PASSED + 1))
        echo "ok - $1"
    else
        OF_FAILED=$((OF_FAILED + 1))
        echo "not ok - $1: expected '$2', got '$3'"
    fi
}

check_match() { # check_match <description> <extended regex> <actual>
    if [[ "$3" =~ $2 ]]; then
        OF_PASSED=$((OF_PASSED + 1))
        echo "ok - $1"
    else
        OF_FAILED=$((OF_FAILED + 1))
        echo "not ok - $1: '$3' does not match /$2/"
    fi
}

# SQL predicate: outbox row ALIAS holds an event its consumer applies in a
# transaction, which leaves an inbox row. A status event that drives no step
# (order CONFIRMED, REJECTED, PAID..., return REJECTED, REFUND_COMPLETED) is
# settled without a transaction and leaves none (docs/architecture.md).
of_sql_leaves_inbox() { # of_sql_leaves_inbox <alias>
    local b="$1"
    printf '%s' "not (($b.headers @> '[{\"k\":\"ce_type\",\"v\":\"order.status.changed\"}]'
        and convert_from($b.payload, 'UTF8')::jsonb->>'status' not in ('CREATED', 'INVENTORY_RESERVED'))
      or ($b.headers @> '[{\"k\":\"ce_type\",\"v\":\"return.status.changed\"}]'
        and convert_from($b.payload, 'UTF8')::jsonb->>'status' in ('REJECTED', 'REFUND_COMPLETED')))"
}

wait_for() { # wait_for <sql returning t> <seconds>
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        [ "$(sql "$1" 2>/dev/null)" = t ] && return 0
        sleep 0.2
    done
    echo "# gave up after $2 s waiting for: $1"
    return 1
}

of_http_wait_ready() { # of_http_wait_ready BASE_URL [SECONDS]: until BASE_URL/readyz answers 200
    local i
    for ((i = 0; i < ${2:-10} * 10; i++)); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/readyz")" = 200 ] && return 0
        sleep 0.1
    done
    echo "# gave up after ${2:-10} s waiting for $1/readyz"
    return 1
}

# --- workers -------------------------------------------------------------------

of_metric() { # of_metric PORT NAME{LABELS}: the value a process serves on PORT, or "-"
    curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null |
        awk -v n="$2" '$1 == n {v = $2} END {print (v == "" ? "-" : v)}'
}

of_metric_wait() { # of_metric_wait PORT NAME VALUE SECONDS: until it serves NAME = VALUE
    local i
    for ((i = 0; i < $4 * 5; i++)); do
        [ "$(of_metric "$1" "$2")" = "$3" ] && return 0
        sleep 0.2
    done
    echo "# timed out waiting for $2 = $3 (it is $(of_metric "$1" "$2"))"
    return 1
}

of_worker_start() { # of_worker_start NAME WORKER [VAR=value...]
    local name=$1 worker=$2
    shift 2
    of_process_start "$name" "$ORDERFLOW_BUILD_DIR/workers/$worker/orderflow-$worker" \
        ORDERFLOW_GROUP_ID="$OF_TAG-$worker" "$@"
}

# Any worker-like program (e.g. a test worker): the same environment, group
# "<tag>-<program name>" unless VAR=value arguments say otherwise.
of_process_start() { # of_process_start NAME PROGRAM [VAR=value...]
    local name=$1 bin=$2
    shift 2
    local shown=() arg
    for arg in "$@"; do # a URL may hold a password, a token is one: their values are not written down
        case $arg in *_URL=* | *_TOKEN=* | *PASSWORD*=*) shown+=("${arg%%=*}=(set)") ;; *) shown+=("$arg") ;; esac
    done
    printf '=== %s: start %s %s\n' "$(date -u +%T.%3N)" "$(basename "$bin")" "${shown[*]}" >>"$OF_WORK/$name.log"
    env DATABASE_URL="$OF_URL" KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" \
        ORDERFLOW_TOPIC_PREFIX="$OF_PREFIX" ORDERFLOW_GROUP_ID="$OF_TAG-$(basename "$bin")" \
        LOG_LEVEL=debug "$@" "$bin" >>"$OF_WORK/$name.log" 2>&1 &
    OF_PIDS[$name]=$!
}

# True once pid has exited (gone, or a zombie waiting to be reaped), within seconds.
of__exited() { # of__exited PID SECONDS
    local i state
    for ((i = 0; i < $2 * 10; i++)); do
        [ -e "/proc/$1" ] || return 0
        state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
        [ "$state" = Z ] && return 0
        [ -z "$state" ] && return 0
        sleep 0.1
    done
    return 1
}

of_worker_stop() { # of_worker_stop NAME: SIGTERM, wait, check exit code 0
    local name=$1 pid=${OF_PIDS[$1]} rc=0
    printf '=== %s: SIGTERM\n' "$(date -u +%T.%3N)" >>"$OF_WORK/$name.log"
    kill -TERM "$pid" 2>/dev/null || true
    if ! of__exited "$pid" 60; then
        echo "# $name did not exit within 60 s of SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" || rc=$?
    unset "OF_PIDS[$name]"
    check "$name exits 0 on SIGTERM (drained, no leak)" 0 "$rc"
}

of_worker_kill() { # of_worker_kill NAME: SIGKILL, wait
    local name=$1 pid=${OF_PIDS[$1]}
    printf '=== %s: SIGKILL\n' "$(date -u +%T.%3N)" >>"$OF_WORK/$name.log"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "OF_PIDS[$name]"
}

# Partitions NAME holds after the assignments and revocations its log shows
# (since its last start).
of_worker_partitions() { # of_worker_partitions NAME
    local log="$OF_WORK/$1.log" start
    start=$(grep -n '^=== .*: start ' "$log" | tail -n 1 | cut -d: -f1 || true)
    tail -n +"${start:-1}" "$log" |
        jq -R -r 'fromjson? | select(.msg == "partition assigned" or .msg == "partition revoked")
                  | "\(.msg) \(.topic)/\(.partition)"' |
        awk '$2 == "assigned" {held[$3] = 1} $2 == "revoked" {delete held[$3]}
             END {n = 0; for (p in held) n++; print n}'
}

of_log_tails() { # of_log_tails [LINES]
    local f
    for f in "$OF_WORK"/*.log; do
        [ -e "$f" ] || continue
        echo "--- $(basename "$f") (last ${1:-40} lines) ---"
        tail -n "${1:-40}" "$f"
    done
}

# --- publishing ------------------------------------------------------------------

of_publish() { # of_publish TOPIC KEY CE_ID CE_TYPE JSON [kcat args...]
    local topic=$1 key=$2 id=$3 type=$4 value=$5
    shift 5
    printf '%s\n' "$value" | kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$OF_PREFIX$topic" -k "$key" \
        -H ce_specversion=1.0 -H "ce_id=$id" -H "ce_type=$type" -H "ce_source=test/$OF_NAME" \
        -H "ce_time=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" -H content-type=application/json "$@"
}

of_publish_structured() { # of_publish_structured TOPIC KEY JSON
    printf '%s\n' "$3" | kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$OF_PREFIX$1" -k "$2" \
        -H content-type=application/cloudevents+json
}

of_publish_raw() { # of_publish_raw TOPIC KEY VALUE [kcat args...]
    local topic=$1 key=$2 value=$3
    shift 3
    printf '%s\n' "$value" | kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$OF_PREFIX$topic" -k "$key" "$@"
}

# --- reading Kafka back --------------------------------------------------------------

of_kafka_load() { # of_kafka_load TOPIC: prints the number of records loaded
    local topic="$OF_PREFIX$1" dump="$OF_WORK/kafka-dump.json"
    timeout 60 kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic" -o beginning -e -q -J >"$dump"
    # CSV with quote and delimiter characters JSON never contains raw: one jsonb per line.
    psql "$OF_URL" -XAtq -v ON_ERROR_STOP=1 \
        -c "copy kafka_raw (j) from stdin with (format csv, quote e'\\x01', delimiter e'\\x02')" <"$dump"
    sql "begin;
         delete from kafka_records where topic = '$topic';
         insert into kafka_records
         select j->>'topic', (j->>'partition')::integer, (j->>'offset')::bigint, j->>'key',
                j->>'payload',
                coalesce((select jsonb_object_agg(j->'headers'->>(2 * i), j->'headers'->>(2 * i + 1))
                          from generate_series(0, jsonb_array_length(coalesce(j->'headers', '[]')) / 2 - 1) i),
                         '{}'),
                coalesce(j->'headers', '[]')
         from kafka_raw;
         truncate kafka_raw;
         commit;
         select count(*) from kafka_records where topic = '$topic'" | tail -n 1
}

of_kafka_wait() { # of_kafka_wait TOPIC SQL SECONDS
    local i
    for ((i = 0; i < $3; i++)); do
        of_kafka_load "$1" >/dev/null
        [ "$(sql "$2")" = t ] && return 0
        sleep 1
    done
    echo "# gave up after $3 s waiting on topic $1 for: $2"
    return 1
}

# --- the end -------------------------------------------------------------------------

of_finish() {
    local name
    for name in "${!OF_PIDS[@]}"; do
        of_worker_stop "$name"
    done
    check "no sanitizer report in the worker logs" 0 \
        "$(cat "$OF_WORK"/*.log 2>/dev/null | grep -c -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' || true)"
    if [ "$OF_FAILED" -ne 0 ]; then
        of_log_tails 60
    fi
    echo "$OF_PASSED passed, $OF_FAILED failed"
    [ "$OF_FAILED" -eq 0 ]
}
