-- 0015_outbox_sender.up.sql: which process wrote (and will send) each outbox
-- row, so that a row is sent straight after its commit only behind older rows
-- of its key that the same producer already has in its queue.
--
-- Before this, a row went out directly when every older pending row of its
-- topic and key was younger than 2 s and not held, on the belief that the
-- older one was on its way in front of it. That holds for one producer (its
-- queue keeps the order), not for two: the older row may be in another
-- worker's producer (a replica that owned the partition before a rebalance,
-- or a process that died after its commit, whose row waits for the sweep).
-- The long chaos run found 77 orders whose order.status.changed versions
-- reached the topic out of order that way.
--
-- Each worker process draws a sender id at start and sets it on every
-- session that writes outbox rows (SET orderflow.sender); the column takes
-- it by default. A new row is now held when an older pending row of its key
-- is held, older than 2 s, or from another sender (or none). Rows written
-- before this migration have no sender, so they count as another's.
alter table outbox add column sender uuid;
-- A default set apart from the add: existing rows stay NULL, no rewrite.
alter table outbox alter column sender set default nullif(current_setting('orderflow.sender', true), '')::uuid;
comment on column outbox.sender is
    'The worker process that wrote the row (its setting orderflow.sender, drawn at start) and sends it after the commit; a younger row of the key from another sender is held behind it.';
