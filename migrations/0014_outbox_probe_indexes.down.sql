-- 0014_outbox_probe_indexes.down.sql: the indexes of 0001 and 0010 again.
create index outbox_unpublished_idx on outbox (seq) where published_at is null;
create index outbox_pending_created_idx on outbox (created_at)
    where published_at is null and dead_at is null;
drop index outbox_aged_idx;
