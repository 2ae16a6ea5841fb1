#!/usr/bin/env bash
# check_generic.sh: common/ knows no domain: "order" and "return" appear in it
# only as generic words (the C keyword, "returns", "in order", "order by",
# "orderflow", ...), never as the order or return entities, their tables,
# ids, executions or codes. Prints the lines at fault and exits 1 on any.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/../common"
generic='orderflow|\breturn(s|ed|ing)?\b|\border by\b|\b(in|out of|lock|creation|record|seq|same|sort|readdir|this|first appearance|reverse|any|key|no|registration|statement) order\b|\border(ing|ed)\b|\bthe order (of|in)\b'
bad=$(grep -rniE 'order|return' . | sed -E "s/$generic//gI" | grep -iE 'order|return' || true)
if [ -n "$bad" ]; then
    echo "common/ names the order/return domain (move it to domain/ or a worker):"
    echo "$bad"
    exit 1
fi
echo "ok - common/ holds no order or return word beyond generic ones"
