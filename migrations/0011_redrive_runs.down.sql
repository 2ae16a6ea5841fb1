-- 0011_redrive_runs.down.sql: drops what 0011 added.
drop index dead_letters_key_idx;
alter table redrives drop column run_id;
drop table redrive_runs;
