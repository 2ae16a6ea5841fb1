-- 0011_queue_autovacuum.up.sql: the runtime's queue-like tables are vacuumed
-- and analysed after a fixed number of changed rows, without cost delay.
--
-- outbox, inbox and deadlines take a steady stream of inserts, updates (a
-- mark, a lease, a fired deadline) and deletes (pruning): their live size is
-- bounded, their churn is not. PostgreSQL's defaults wait for 20 % of the
-- table to be dead and then vacuum throttled (2 ms per 200 cost units), so a
-- hot table bloats before and while it is vacuumed: the chaos harness saw the
-- outbox's heap grow to 1.3 GB for 135,000 rows, most of it dead. A fixed
-- threshold keeps vacuum runs small and frequent, and fresh statistics keep
-- the plans on the partial indexes (migrations 0009, 0010).
alter table outbox set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000);
alter table inbox set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,
    autovacuum_vacuum_cost_delay = 0);
alter table deadlines set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0);
