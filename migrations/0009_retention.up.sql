-- 0009_retention.up.sql: what pruning needs: an index for every prune
-- statement, and the delete grants of the workers' pruners.
--
-- Each worker prunes in small batches on its relay connection (common/src/prune.c,
-- docs/operations.md "Retention"): its own inbox rows, published outbox rows,
-- its own dead letters that were redriven, optionally finished executions, and
-- order-status the fired or cancelled deadlines (domain/src/retention.c). A
-- batch is one statement of the shape
--
--   delete from T where key in (select key from T where <due> order by <time>
--                               limit $n for update skip locked)
--
-- so every <due> condition below has an index that finds the oldest rows and
-- min(<time>) (the orderflow_prune_oldest_age_seconds gauge) without a scan.
-- `orderctl prune` runs the same statements as the schema owner.

-- inbox: by consumer, then age. This replaces the BRIN index of 0007: once
-- pruned pages are vacuumed and filled with new rows, a BRIN range keeps the
-- oldest time it ever held (summaries only widen), so after the first prunes
-- it would match every range and each batch would read the whole table; and a
-- BRIN index cannot give min(processed_at) of one consumer.
create index inbox_consumer_processed_at_idx on inbox (consumer, processed_at);
drop index inbox_processed_at_brin;
comment on table inbox is
    'CloudEvent ids each consumer has processed, written in the transaction of the effect, so a redelivered ce_id has effect once; pruned by consumer and processed_at after --retention-inbox.';

-- outbox: published rows by age (outbox_unpublished_idx covers the others,
-- which are never pruned).
create index outbox_published_at_idx on outbox (published_at) where published_at is not null;

-- dead_letters: the redriven (resolved) ones of each worker, by the last redrive.
create index dead_letters_redriven_idx on dead_letters (worker, redriven_at)
    where redriven_at is not null;

-- deadlines: fired or cancelled ones by when that happened (deadlines_pending_idx
-- covers the others, which are never pruned).
create index deadlines_done_idx on deadlines ((coalesce(fired_at, cancelled_at)))
    where fired_at is not null or cancelled_at is not null;

-- executions: finished ones by when they stopped (--retention-history, off by
-- default); their execution_history rows go with them (on delete cascade,
-- 0001). A running execution's updates leave stopped_at null, so they stay HOT.
create index executions_stopped_at_idx on executions (stopped_at) where stopped_at is not null;

-- The pruners of the three workers. FOR UPDATE (SKIP LOCKED: replicas prune
-- side by side without waiting for each other) needs UPDATE on some column.
-- inbox gets processed_at: a role that may delete any inbox row gains nothing
-- by moving one's time. dead_letters gets record_md5, a generated column that
-- can only be "updated" to the value it has, so the grant allows the lock and
-- no change. outbox, executions and deadlines have column grants from 0005.
-- redrives rows are deleted with their dead letter by the foreign key's
-- cascade, which PostgreSQL runs as the table's owner: no grant on redrives.
grant delete on inbox, outbox, dead_letters, executions
    to orderflow_order_created, orderflow_order_status, orderflow_return_requested;
grant update (processed_at) on inbox
    to orderflow_order_created, orderflow_order_status, orderflow_return_requested;
grant update (record_md5) on dead_letters
    to orderflow_order_created, orderflow_order_status, orderflow_return_requested;
grant delete on deadlines to orderflow_order_status;
