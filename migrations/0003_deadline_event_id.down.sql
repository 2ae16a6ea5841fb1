-- 0003_deadline_event_id.down.sql: drops the column added by 0003.
alter table deadlines drop column event_id;
