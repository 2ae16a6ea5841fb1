-- 0015_outbox_sender.down.sql: drops what 0015 added.
alter table outbox drop column sender;
