-- 0014_outbox_probe_indexes.up.sql: "is an older row of this key pending?"
-- has one index that can answer it.
--
-- The relay asks that question for every row it inserts (held or not) and for
-- every row a sweep claims, one probe per row: topic and key equal, seq lower,
-- pending. 0010 gave it outbox_pending_key_idx (topic, key, seq), but two
-- other indexes had predicates the probe implies (published_at is null, and
-- dead_at is null), so the planner could also probe with them, scanning every
-- pending row once per candidate. It did, on a 200,000-order chaos run whose
-- statistics were stale after Postgres crashes: with 32,259 pending rows every
-- sweep hit its 30 s statement timeout and the backlog never moved.
--
-- So the indexes that are not keyed get predicates the probe does not imply:
--   - the sweep's rows past the grace period are the pending rows that are not
--     held (held rows have outbox_held_idx): outbox_aged_idx (created_at)
--     where not held, instead of outbox_pending_created_idx;
--   - outbox_unpublished_idx (seq) where published_at is null goes: the
--     backlog gauges count pending rows (outbox_pending_key_idx), and
--     `orderctl outbox list` may sort the pending rows itself.
create index outbox_aged_idx on outbox (created_at)
    where not held and published_at is null and dead_at is null;
drop index outbox_pending_created_idx;
drop index outbox_unpublished_idx;
