-- 0010_outbox_order.up.sql: the relay keeps each key's order, and a row that
-- can never be delivered ends instead of being retried forever.
--
-- A row is sent straight after its transaction commits unless an older row of
-- the same topic and key is still pending (not published, not dead) and at
-- risk (held itself, or unpublished for more than 2 s): then it is inserted
-- held, and the relay sends it only once every older pending row
-- of its key has been published or is sent with it, in seq order (common/src/
-- outbox.c). A delivery that fails makes its row held as well, so it goes out
-- again before anything younger of its key. A permanent delivery error (the
-- broker will never take the record, e.g. MSG_SIZE_TOO_LARGE) counts in
-- failures; at the relay's limit the row is dead (dead_at, last_error) and no
-- longer holds up its key.
alter table outbox
    add column held boolean not null default false,
    add column failures integer not null default 0 check (failures >= 0),
    add column dead_at timestamptz;
comment on column outbox.held is
    'Not sent directly: an older row of the same topic and key was pending when it was written, or its delivery failed; the relay sends it after the older ones, in seq order.';
comment on column outbox.failures is
    'Permanent delivery errors (the broker refuses the record itself); at the relay''s limit the row is dead.';
comment on column outbox.dead_at is
    'When the relay gave the row up after too many permanent delivery errors (see last_error); a dead row is never sent and holds up no other row.';
-- The pending rows of one key, oldest first: the check at insert and the
-- relay's "no older pending row" test.
create index outbox_pending_key_idx on outbox (topic, key, seq)
    where published_at is null and dead_at is null;
-- The sweep's candidates: held rows in seq order, and rows still unpublished
-- after the grace period by age. Both stay small while deliveries go well.
create index outbox_held_idx on outbox (seq)
    where held and published_at is null and dead_at is null;
create index outbox_pending_created_idx on outbox (created_at)
    where published_at is null and dead_at is null;
grant update (held, failures, dead_at, last_error) on outbox
    to orderflow_order_created, orderflow_order_status, orderflow_return_requested;
