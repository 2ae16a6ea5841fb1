#!/usr/bin/env bash
# ci.sh: the CI-sized chaos run (ctest chaos.ci) against the test stack:
# 20,000 orders and at least 50 faults; skipped (77) in a build without failpoints.
set -euo pipefail
case "${ORDERFLOW_FAILPOINTS_BUILT:-OFF}" in
  ON | on | 1 | TRUE | true) ;;
  *) echo "skipped: the build has no failpoints (configure with -DORDERFLOW_FAILPOINTS=ON)"; exit 77 ;;
esac
exec python3 "$ORDERFLOW_SOURCE_DIR/tests/chaos/chaos.py" --orders "${CHAOS_ORDERS:-20000}" \
  --faults "${CHAOS_FAULTS:-50}" --seed "${CHAOS_SEED:-$(date +%s)}" "$@"
