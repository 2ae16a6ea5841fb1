-- 0012_outbox_sender.down.sql: drops what 0012 added.
alter table outbox drop column sender;
