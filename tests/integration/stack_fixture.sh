#!/usr/bin/env bash
# stack_fixture.sh: setup and cleanup of the ctest fixture "stack", the local
# stack (PostgreSQL + Kafka, no workers) that integration tests run against.
#
#   stack_fixture.sh setup    start the test stack unless it is already up
#   stack_fixture.sh cleanup  stop it again, but only if setup started it
#
# ctest passes the test stack's environment (ORDERFLOW_STACK_DIR, ports,
# ORDERFLOW_SOURCE_DIR, ORDERFLOW_BUILD_DIR). A stack setup starts begins with
# empty data (down --purge first); one that was already up is only refreshed
# (migrations, topics) and keeps its data. Setup leaves the file
# $ORDERFLOW_STACK_DIR/fixture-owned when it starts the stack; cleanup stops the
# stack only when that file is there, so a stack a developer started by hand
# (with the same state dir) keeps running.
set -euo pipefail

: "${ORDERFLOW_SOURCE_DIR:?stack_fixture.sh runs under ctest (ORDERFLOW_SOURCE_DIR is unset)}"
: "${ORDERFLOW_STACK_DIR:?ORDERFLOW_STACK_DIR is unset}"
: "${ORDERFLOW_BUILD_DIR:?ORDERFLOW_BUILD_DIR is unset}"
stack="$ORDERFLOW_SOURCE_DIR/ops/stack"
owned="$ORDERFLOW_STACK_DIR/fixture-owned"

log() { printf 'stack_fixture: %s\n' "$*"; }

case "${1:-}" in
  setup)
    if "$stack" status >/dev/null 2>&1 && [[ ! -f "$owned" ]]; then
      log "test stack already up in $ORDERFLOW_STACK_DIR; refreshing it and leaving it running at cleanup"
    else
      # Every run the fixture owns starts from empty data (the test stack is
      # throwaway), so an edited migration or leftover rows cannot leak from an
      # earlier run. The data of the last run stays until the next setup.
      "$stack" down --purge
      # Claim the stack before starting it, so cleanup also stops a half-started one.
      mkdir -p -- "$ORDERFLOW_STACK_DIR"
      printf 'started by the ctest fixture at %s\n' "$(date -u +%FT%TZ)" >"$owned"
      log "starting the test stack in $ORDERFLOW_STACK_DIR"
    fi
    # ctest runs after the build, so the tree in ORDERFLOW_BUILD_DIR (and its
    # orderctl, which applies the migrations) is current: no build here.
    start=$(date +%s%3N)
    "$stack" up --no-workers --no-build
    log "stack up in $(($(date +%s%3N) - start)) ms"
    "$stack" status
    ;;
  cleanup)
    if [[ -f "$owned" ]]; then
      log "stopping the test stack the fixture started"
      "$stack" down
      rm -f -- "$owned"
      "$stack" status && {
        log "error: the stack still runs after down"
        exit 1
      }
      log "stopped"
    else
      log "leaving the test stack running: it was up before the tests"
    fi
    ;;
  *)
    echo "usage: stack_fixture.sh setup|cleanup" >&2
    exit 2
    ;;
esac
