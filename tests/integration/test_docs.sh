#!/usr/bin/env bash
# test_docs.sh: the generated parts of the documentation match the programs,
# and the metrics reference and alert rules in docs/operations.md match what
# the workers export.
#
# usage: test_docs.sh ORDERCTL WORKER_BINARY...
#
# 1. Every file that must carry a generated block has it (state diagrams,
#    the workers' --help, the settings table of docs/operations.md).
# 2. Copies every Markdown file that holds a generated block (see
#    ops/gen-docs) into a temporary tree, regenerates the blocks there with
#    the given orderctl (state diagrams) and worker binaries (--help texts,
#    settings table), and fails with a diff when a file in the repository
#    differs from its regenerated copy. Nothing falls back to another build
#    tree: a block naming a worker not given here fails.
# 3. Starts each worker with PostgreSQL and Kafka unreachable (its HTTP
#    endpoint still serves), reads the metric families from /metrics, and
#    compares them (name and type) with the table under "## Metrics" in
#    docs/operations.md; every metric the PromQL and alert rules there name
#    must exist.
# 4. promtool check rules on the block marked "CHECKED: promtool check rules".
#
# Needs no stack: registered as ctest docs.diagrams, label unit. Needs curl
# and promtool (ops/install-deps --test-tools).
set -euo pipefail

REPO="$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)"
(($# >= 2)) || {
    echo "usage: test_docs.sh ORDERCTL WORKER_BINARY..." >&2
    exit 2
}
orderctl="$1"
shift
workers=("$@")
for bin in "$orderctl" "${workers[@]}"; do
    [[ -x "$bin" ]] || {
        echo "not ok - \"$bin\" is not an executable" >&2
        exit 1
    }
done

work="$(mktemp -d)"
pids=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf -- "$work"
}
trap cleanup EXIT

failed=0
ok() { echo "ok - $1"; }
not_ok() {
    echo "not ok - $1"
    failed=1
}

# --- 1. the blocks that must exist --------------------------------------------
# A doc that lost its block would otherwise pass unnoticed.
all_workers="orderflow-order-created orderflow-order-status orderflow-return-requested"
required=(
    "docs/state-machines.md|orderctl graph order"
    "docs/state-machines.md|orderctl graph return"
    "docs/operations.md|settings $all_workers"
    "workers/order-created/README.md|orderctl graph order"
    "workers/order-created/README.md|orderflow-order-created --help"
    "workers/order-status/README.md|orderctl graph order"
    "workers/order-status/README.md|orderflow-order-status --help"
    "workers/return-requested/README.md|orderctl graph return"
    "workers/return-requested/README.md|orderflow-return-requested --help"
)
for entry in "${required[@]}"; do
    f="${entry%%|*}" what="${entry#*|}"
    if grep -qxF "<!-- BEGIN GENERATED: $what -->" "$REPO/$f" 2>/dev/null; then
        ok "$f has a generated block \"$what\""
    else
        not_ok "$f has no block <!-- BEGIN GENERATED: $what -->"
    fi
done

# --- 2. regenerate a copy and compare -------------------------------------------
mapfile -t files < <(cd "$REPO" && grep -rlE --include='*.md' '^<!-- BEGIN GENERATED: ' \
    docs workers common tools gateway 2>/dev/null | sort)
if ((${#files[@]} == 0)); then
    not_ok "no generated blocks found in the repository"
    exit 1
fi
for f in "${files[@]}"; do
    mkdir -p -- "$work/tree/$(dirname -- "$f")"
    cp -- "$REPO/$f" "$work/tree/$f"
done

args=(--root "$work/tree" --orderctl "$orderctl" --build "$work/no-build-tree")
for bin in "${workers[@]}"; do
    args+=(--bin "$bin")
done
if ! "$REPO/ops/gen-docs" "${args[@]}" >"$work/gen.log" 2>&1; then
    cat -- "$work/gen.log"
    not_ok "ops/gen-docs failed on a copy of the docs"
    exit 1
fi
ok "ops/gen-docs regenerated ${#files[@]} file(s) in a copy"

# The copy must hold what the programs print now, so the comparison below is
# against real output and not against an empty or stale block.
for machine in order return; do
    "$orderctl" graph "$machine" --format mermaid >"$work/graph.txt"
    if grep -qx 'stateDiagram-v2' "$work/graph.txt" &&
        grep -qxF -f <(sed -n '2p' "$work/graph.txt") "$work/tree/docs/state-machines.md"; then
        ok "the regenerated state-machines.md holds the output of orderctl graph $machine"
    else
        not_ok "the regenerated state-machines.md lacks the output of orderctl graph $machine"
    fi
done
for bin in "${workers[@]}"; do
    name="$(basename -- "$bin")"
    flags="$("$bin" --help | awk '/^  --/ && $1 != "--help" {print $1}')"
    missing=""
    # The workers' settings are in docs/operations.md, the gateway's in its README.
    table="$work/tree/docs/operations.md"
    [[ "$name" == orderflow-gateway ]] && table="$work/tree/gateway/README.md"
    for flag in $flags; do
        grep -qF "| \`$flag\` |" "$table" || missing+=" $flag"
    done
    if [[ -n "$flags" && -z "$missing" ]]; then
        ok "the regenerated settings table has every flag of $name ($(wc -w <<<"$flags"))"
    else
        not_ok "the regenerated settings table lacks flags of $name:${missing:- (no flags read)}"
    fi
done

for f in "${files[@]}"; do
    if diff -u --label "$f (in the repository)" --label "$f (regenerated)" \
        -- "$REPO/$f" "$work/tree/$f" >"$work/diff.txt"; then
        ok "$f is up to date"
    else
        cat -- "$work/diff.txt"
        not_ok "$f differs from the regenerated copy: run ops/gen-docs"
    fi
done

# --- 3. the metrics reference ----------------------------------------------------
# Each worker serves /metrics before it has PostgreSQL or Kafka: every family
# is registered at start (order-status's own in its start hook), so the TYPE
# lines are the complete list. Ports are tried from a random base until one
# answers; a port that cannot be bound leaves the worker running without the
# endpoint, so that attempt is killed and the next port tried.
scrape() {
    local bin="$1" out="$2" port attempt pid i j
    for ((attempt = 0; attempt < 5; attempt++)); do
        port=$((20000 + RANDOM % 20000))
        env -i PATH="$PATH" ASAN_OPTIONS="${ASAN_OPTIONS:-}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-}" \
            LSAN_OPTIONS="${LSAN_OPTIONS:-}" DATABASE_URL=postgresql://nobody@127.0.0.1:1/none \
            KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1 \
            "$bin" --http-address 127.0.0.1 --http-port "$port" --grace-period 1s \
            >>"$work/worker.log" 2>&1 &
        pid=$!
        pids+=("$pid")
        for ((i = 0; i < 50; i++)); do
            if curl -fsS --max-time 1 -o "$out" "http://127.0.0.1:$port/metrics" 2>/dev/null; then
                kill -TERM "$pid" 2>/dev/null || true
                for ((j = 0; j < 100; j++)); do
                    kill -0 "$pid" 2>/dev/null || return 0
                    sleep 0.05
                done
                kill -KILL "$pid" 2>/dev/null || true
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    return 1
}

: >"$work/exported.txt"
for bin in "${workers[@]}"; do
    name="$(basename -- "$bin")"
    if scrape "$bin" "$work/metrics.$name.txt"; then
        n="$(awk '$1 == "#" && $2 == "TYPE" {print $3, $4}' "$work/metrics.$name.txt" |
            tee -a "$work/exported.txt" | wc -l)"
        ok "$name serves /metrics without PostgreSQL and Kafka ($n families)"
    else
        tail -n 20 -- "$work/worker.log"
        not_ok "could not read /metrics of $name"
    fi
done
sort -u -o "$work/exported.txt" "$work/exported.txt"

# The reference: rows "| `orderflow_...` | type | ..." of the section "## Metrics".
awk '/^## / {in_section = ($0 == "## Metrics")}
     in_section && /^\| `orderflow_[a-z_]+` \| / {
         split($0, c, "|"); name = c[2]; type = c[3]
         gsub(/[ `]/, "", name); gsub(/ /, "", type); print name, type }' \
    "$REPO/docs/operations.md" | sort -u >"$work/documented.txt"
if [[ -s "$work/exported.txt" && -s "$work/documented.txt" ]] &&
    diff -u --label "exported by the workers" --label "documented in docs/operations.md" \
        -- "$work/exported.txt" "$work/documented.txt" >"$work/diff.txt"; then
    ok "docs/operations.md documents every metric with its type ($(wc -l <"$work/exported.txt"))"
else
    cat -- "$work/diff.txt" 2>/dev/null || true
    not_ok "the metrics table in docs/operations.md differs from what the workers export"
fi

# Metrics named in the PromQL and alert-rule blocks: a histogram's series
# carry _bucket, _sum and _count.
awk '/^```(promql|yaml)$/ {code = 1; next} /^```$/ {code = 0} code' "$REPO/docs/operations.md" |
    grep -oE 'orderflow_[a-z_]+' | sort -u >"$work/used.txt" || true
unknown=""
while read -r metric; do
    base="$metric"
    if ! grep -q "^$metric " "$work/exported.txt"; then
        base="$(sed -E 's/_(bucket|sum|count)$//' <<<"$metric")"
        grep -q "^$base histogram$" "$work/exported.txt" || unknown+=" $metric"
    fi
done <"$work/used.txt"
if [[ -s "$work/used.txt" && -z "$unknown" ]]; then
    ok "every metric in the queries and alert rules exists ($(wc -l <"$work/used.txt"))"
else
    not_ok "queries or alert rules in docs/operations.md name unknown metrics:${unknown:- (none found)}"
fi

# --- 4. the alert rules ------------------------------------------------------------
awk '/^<!-- CHECKED: promtool check rules -->$/ {state = 1; next}
     state == 1 && /^```yaml$/ {state = 2; next}
     state == 2 && /^```$/ {exit}
     state == 2 {print}' "$REPO/docs/operations.md" >"$work/rules.yml"
promtool="$(command -v promtool || true)"
[[ -n "$promtool" ]] || promtool="$REPO/.cache/tools/promtool"
if [[ ! -s "$work/rules.yml" ]]; then
    not_ok "docs/operations.md has no yaml block after <!-- CHECKED: promtool check rules -->"
elif [[ ! -x "$promtool" ]]; then
    not_ok "promtool is not installed (ops/install-deps --test-tools)"
elif "$promtool" check rules "$work/rules.yml" >"$work/promtool.log" 2>&1; then
    ok "promtool accepts the alert rules ($(grep -c '^      - alert:' "$work/rules.yml") alerts)"
else
    cat -- "$work/promtool.log"
    not_ok "promtool check rules rejects the alert rules in docs/operations.md"
fi

exit "$failed"
