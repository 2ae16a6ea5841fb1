#!/usr/bin/env bash
# test_docs.sh: the generated blocks of the documentation match the programs.
#
# usage: test_docs.sh ORDERCTL [WORKER_BINARY...]
#
# Copies every Markdown file that holds a generated block (see ops/gen-docs)
# into a temporary tree, regenerates the blocks there with the given orderctl
# (state diagrams) and worker binaries (--help texts), and fails with a diff
# when a file in the repository differs from its regenerated copy. Needs no
# stack: registered as ctest docs.diagrams, label unit.
set -euo pipefail

REPO="$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)"
(($# >= 1)) || {
    echo "usage: test_docs.sh ORDERCTL [WORKER_BINARY...]" >&2
    exit 2
}
orderctl="$1"
shift
[[ -x "$orderctl" ]] || {
    echo "not ok - orderctl \"$orderctl\" is not an executable" >&2
    exit 1
}

work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT

failed=0
ok() { echo "ok - $1"; }
not_ok() {
    echo "not ok - $1"
    failed=1
}

# The files that must carry the order machine's diagram: a doc that lost its
# block would otherwise pass unnoticed.
for f in docs/state-machines.md workers/order-created/README.md workers/order-status/README.md; do
    if grep -qxF '<!-- BEGIN GENERATED: orderctl graph order -->' "$REPO/$f" 2>/dev/null; then
        ok "$f has a generated order diagram"
    else
        not_ok "$f has no block <!-- BEGIN GENERATED: orderctl graph order -->"
    fi
done

mapfile -t files < <(cd "$REPO" && grep -rlE --include='*.md' '^<!-- BEGIN GENERATED: ' \
    docs workers common tools 2>/dev/null | sort)
if ((${#files[@]} == 0)); then
    not_ok "no generated blocks found in the repository"
    exit 1
fi
for f in "${files[@]}"; do
    mkdir -p -- "$work/tree/$(dirname -- "$f")"
    cp -- "$REPO/$f" "$work/tree/$f"
done

args=(--root "$work/tree" --orderctl "$orderctl")
for bin in "$@"; do
    args+=(--bin "$bin")
done
if ! "$REPO/ops/gen-docs" "${args[@]}" >"$work/gen.log" 2>&1; then
    cat -- "$work/gen.log"
    not_ok "ops/gen-docs failed on a copy of the docs"
    exit 1
fi
ok "ops/gen-docs regenerated ${#files[@]} file(s) in a copy"

# The copy must hold what orderctl prints now, so the comparison below is
# against real output and not against an empty or stale block.
"$orderctl" graph order --format mermaid >"$work/graph.txt"
if grep -qx 'stateDiagram-v2' "$work/graph.txt" &&
    grep -qF -f <(sed -n '2p' "$work/graph.txt") "$work/tree/docs/state-machines.md"; then
    ok "the regenerated state-machines.md holds the output of orderctl graph order"
else
    not_ok "the regenerated state-machines.md lacks the output of orderctl graph order"
fi

for f in "${files[@]}"; do
    if diff -u --label "$f (in the repository)" --label "$f (regenerated)" \
        -- "$REPO/$f" "$work/tree/$f" >"$work/diff.txt"; then
        ok "$f is up to date"
    else
        cat -- "$work/diff.txt"
        not_ok "$f differs from the regenerated copy: run ops/gen-docs"
    fi
done

exit "$failed"
