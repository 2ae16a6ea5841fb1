-- 0017_console.up.sql: the console's list of executions (console/api.c) pages
-- through executions newest first, optionally from a time on: an index on
-- started_at keeps each page an index scan as the table grows.
create index executions_started_at_idx on executions (started_at);
