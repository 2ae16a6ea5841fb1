-- 0016_parking.up.sql: per-key parking. An event that cannot take effect
-- now for a reason that may clear (a missing dependency such as a product not
-- yet published, an expected_version ahead of the entity's) parks its Kafka
-- key: the event and every later event of the same key on that topic are kept
-- here, in arrival order, and the partition moves on. The worker retries a
-- parked key with a capped backoff (next_try_at), `orderctl parked release`
-- makes it due at once, and once a key has been parked for park-max-age its
-- head event takes its final outcome (rejected, or dead-lettered) so that no
-- key waits forever. See docs/architecture.md "Parking".
create table parked_keys (
    consumer     text        not null,                -- the worker (inbox consumer)
    topic        text        not null,
    key          bytea       not null,                -- the Kafka key (the order id)
    reason       text        not null,                -- why the head event waits
    error_code   text        not null,                -- e.g. UNKNOWN_PRODUCT, VERSION_GAP
    head_ce_id   text        not null,                -- the event that parked the key
    parked_at    timestamptz not null default now(),
    attempts     integer     not null default 0,      -- replays that parked again
    next_try_at  timestamptz not null default now() + interval '1 second',
    released_at  timestamptz,                         -- set by orderctl parked release
    released_by  text,
    release_final boolean    not null default false,  -- release --final: take the outcome now
    primary key (consumer, topic, key)
);
-- The worker's due-key probe: where consumer = $1 and next_try_at <= now().
create index parked_keys_due_idx on parked_keys (consumer, next_try_at);

create table parked_events (
    id         bigint generated always as identity primary key, -- arrival order
    consumer   text        not null,
    topic      text        not null,
    key        bytea       not null,
    partition  integer     not null,
    "offset"   bigint      not null,
    ce_id      text        not null,
    ce_type    text,
    headers    jsonb       not null,                 -- the outbox's header form
    payload    bytea       not null,
    parked_at  timestamptz not null default now(),
    -- A redelivered event that is already parked keeps its first place.
    unique (consumer, ce_id)
);
create index parked_events_key_idx on parked_events (consumer, topic, key, id);

comment on table parked_keys is
    'Kafka keys whose events wait (parked) because the head event cannot take effect yet; see migration 0016.';
comment on table parked_events is
    'The events of parked keys, in arrival order (id), replayed when the key is released.';

grant select, insert, update, delete on parked_keys to orderflow_order_created,
    orderflow_order_status, orderflow_return_requested;
grant select, insert, delete on parked_events to orderflow_order_created,
    orderflow_order_status, orderflow_return_requested;
-- orderctl reads them (default privileges of 0005) and releases keys.
grant select on parked_keys, parked_events to orderflow_orderctl;
grant update (next_try_at, released_at, released_by, release_final) on parked_keys
    to orderflow_orderctl;
