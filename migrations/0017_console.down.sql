-- 0017_console.down.sql: drops what 0017 added.
drop index executions_started_at_idx;
