-- 0003_deadline_event_id.up.sql: each deadline gets the id of the event it
-- fires (order.deadline.expired), fixed when the deadline is armed, so that a
-- deadline fired twice would still be applied once (the inbox keys on it).
alter table deadlines add column event_id uuid not null default gen_random_uuid() unique;
comment on column deadlines.event_id is
    'ce_id of the order.deadline.expired event this deadline fires.';
