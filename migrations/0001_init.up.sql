-- 0001_init.up.sql: the orderflow schema: catalogue, orders and returns, the
-- state machines' executions and history, and the runtime's inbox, outbox,
-- dead letters and deadlines.
--
-- Applied by `orderctl migrate up` inside one transaction (do not add
-- BEGIN/COMMIT here). Table and key column names are fixed by the public
-- contract (docs: contract section 5).

-- Catalogue -------------------------------------------------------------------

create table customers (
    id text primary key check (id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    name text not null,
    email text,
    created_at timestamptz not null default now()
);
comment on table customers is
    'Known customers; an order whose customer_id is not here is created and then REJECTED (UNKNOWN_CUSTOMER).';

create table products (
    id text primary key check (id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    name text not null,
    price_cents bigint not null check (price_cents >= 0),
    stock integer not null check (stock >= 0),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
comment on table products is
    'Products with their current price and available stock; UpdateInventory reserves stock here, all items or none.';
comment on column products.stock is
    'Units available to reserve; the check keeps a reservation from overselling.';

-- Orders ------------------------------------------------------------------------

create table orders (
    id uuid primary key,
    -- No foreign key to customers: orders for unknown customers are created and rejected.
    customer_id text not null,
    status text not null check (status in ('CREATED', 'INVENTORY_RESERVED', 'CONFIRMED', 'REJECTED',
                                           'PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED', 'RETURNED',
                                           'PARTIALLY_RETURNED')),
    version integer not null default 1 check (version >= 1),
    status_reason text,
    total_cents bigint not null default 0 check (total_cents >= 0),
    currency text not null default 'USD' check (currency ~ '^[A-Z]{3}$'),
    correlation_id text not null,
    source_event_id text not null unique,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    confirmed_at timestamptz,
    delivered_at timestamptz
);
create index orders_status_idx on orders (status);
create index orders_customer_id_idx on orders (customer_id);
comment on table orders is
    'One row per order.created event; status is the OrderProcess/OrderUpdate state, version +1 per transition.';
comment on column orders.source_event_id is
    'ce_id of the order.created event that created the order; unique so a redelivery cannot create a second order.';
comment on column orders.correlation_id is
    'ce_id of the upstream event that started the chain; copied into every event orderflow publishes for the order.';

create table order_items (
    order_id uuid not null references orders (id) on delete cascade,
    line integer not null,
    -- No foreign key to products: unknown products are recorded and the order rejected.
    product_id text not null,
    quantity integer not null check (quantity between 1 and 10000),
    unit_price_cents bigint check (unit_price_cents >= 0),
    reserved boolean not null default false,
    primary key (order_id, line)
);
create index order_items_product_id_idx on order_items (product_id);
comment on table order_items is
    'Lines of an order with the price snapshot taken at creation (NULL when the product is unknown).';
comment on column order_items.reserved is
    'True while the line''s quantity is held out of products.stock; cancellation releases reserved lines.';

-- Returns and refunds -----------------------------------------------------------

create table returns (
    id uuid primary key,
    order_id uuid not null references orders (id),
    status text not null check (status in ('INITIATED', 'REJECTED', 'RETURN_PROCESSED',
                                           'REFUND_INITIATED', 'REFUND_PROCESSED',
                                           'REFUND_COMPLETED')),
    version integer not null default 1 check (version >= 1),
    reason text,
    status_reason text,
    refund_cents bigint check (refund_cents >= 0),
    correlation_id text not null,
    source_event_id text not null unique,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index returns_order_id_idx on returns (order_id);
comment on table returns is
    'One row per return.requested event; status is the ReturnRefund state, version +1 per transition.';
comment on column returns.reason is 'Reason given by the customer in return.requested.';
comment on column returns.status_reason is 'Why orderflow rejected the return, when it did.';

create table return_items (
    return_id uuid not null references returns (id) on delete cascade,
    product_id text not null,
    quantity integer not null check (quantity between 1 and 10000),
    unit_price_cents bigint,
    primary key (return_id, product_id)
);
comment on table return_items is
    'Products and quantities of a return, priced from the order''s snapshot.';

create table refunds (
    id uuid primary key,
    return_id uuid unique references returns (id),
    order_id uuid not null references orders (id),
    amount_cents bigint not null check (amount_cents >= 0),
    cause text not null check (cause in ('RETURN', 'CANCELLATION')),
    created_at timestamptz not null default now(),
    constraint refunds_cause_matches_return check ((cause = 'RETURN') = (return_id is not null))
);
-- At most one refund per return (the unique return_id) and one cancellation
-- refund per order (below): ProcessRefund can be retried without paying twice.
create unique index refunds_one_cancellation_per_order on refunds (order_id)
    where return_id is null;
comment on table refunds is
    'Money given back: one row per completed return (cause RETURN) or per cancelled PAID order (cause CANCELLATION).';

-- State machine executions ------------------------------------------------------

create table executions (
    id uuid primary key,
    machine text not null check (machine in ('OrderProcess', 'OrderUpdate', 'ReturnRefund')),
    order_id uuid not null,
    return_id uuid,
    status text not null check (status in ('RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT',
                                           'ABORTED')),
    current_state text not null,
    started_at timestamptz not null default now(),
    stopped_at timestamptz,
    input jsonb,
    output jsonb,
    error text,
    constraint executions_stopped_iff_not_running check ((status = 'RUNNING') = (stopped_at is null)),
    constraint executions_return_iff_return_refund
        check ((machine = 'ReturnRefund') = (return_id is not null))
);
-- One OrderProcess and one OrderUpdate execution per order, one ReturnRefund per return.
create unique index executions_one_per_order on executions (machine, order_id)
    where return_id is null;
create unique index executions_one_per_return on executions (return_id)
    where return_id is not null;
create index executions_order_id_idx on executions (order_id);
comment on table executions is
    'What replaces Step Functions execution ARNs: one row per machine run (OrderProcess, OrderUpdate per order; ReturnRefund per return).';

create table execution_history (
    execution_id uuid not null references executions (id) on delete cascade,
    seq integer not null,
    at timestamptz not null default clock_timestamp(),
    step text not null,
    from_state text,
    to_state text,
    outcome text not null default 'applied' check (outcome in ('applied', 'rejected', 'ignored')),
    event_id text,
    topic text,
    partition integer,
    "offset" bigint,
    detail jsonb,
    primary key (execution_id, seq)
);
comment on table execution_history is
    'Every step of an execution in order (seq from 1), including updates the machine rejected, with the Kafka position of the event that caused it.';
comment on column execution_history.outcome is
    'applied: the transition happened; rejected: not allowed from the current state or version; ignored: no effect (for example a duplicate).';

-- Runtime: exactly-once effects over at-least-once delivery -----------------------

create table inbox (
    consumer text not null,
    ce_id text not null,
    ce_type text,
    topic text not null,
    partition integer not null,
    "offset" bigint not null,
    processed_at timestamptz not null default now(),
    primary key (consumer, ce_id)
);
create index inbox_processed_at_idx on inbox (processed_at);
comment on table inbox is
    'CloudEvent ids each consumer has processed, written in the transaction of the effect, so a redelivered ce_id has effect once; pruned by processed_at.';

create table outbox (
    id uuid primary key,
    seq bigint generated always as identity unique,
    topic text not null,
    key bytea,
    payload bytea not null,
    headers jsonb not null default '[]' check (jsonb_typeof(headers) = 'array'),
    created_at timestamptz not null default clock_timestamp(),
    published_at timestamptz,
    attempts integer not null default 0 check (attempts >= 0),
    claimed_until timestamptz,
    last_error text
);
create index outbox_unpublished_idx on outbox (seq) where published_at is null;
comment on table outbox is
    'Events written in the same transaction as the state change and published to Kafka afterwards, in seq order.';
comment on column outbox.claimed_until is
    'Lease taken by a relay sweep republishing the row, so that replicas do not send it at the same time.';
comment on column outbox.headers is
    'Kafka headers as a JSON array of {"k": name, "v": text value}, or {"k": name, "b64": base64 bytes} for values that are not UTF-8.';

create table dead_letters (
    id bigint generated always as identity primary key,
    worker text not null,
    topic text not null,
    partition integer not null,
    "offset" bigint not null,
    key bytea,
    payload bytea,
    headers jsonb not null default '[]' check (jsonb_typeof(headers) = 'array'),
    ce_id text,
    ce_type text,
    error_code text not null,
    reason text not null,
    created_at timestamptz not null default now(),
    redriven_at timestamptz,
    redrive_count integer not null default 0 check (redrive_count >= 0),
    unique (worker, topic, partition, "offset")
);
create index dead_letters_created_at_idx on dead_letters (created_at);
create index dead_letters_topic_idx on dead_letters (topic);
comment on table dead_letters is
    'Every event sent to a dead-letter topic, with the original bytes and headers (same format as outbox.headers) and why; unique per source position.';

create table deadlines (
    id bigint generated always as identity primary key,
    order_id uuid not null references orders (id),
    kind text not null check (kind in ('PAYMENT')),
    due_at timestamptz not null,
    fired_at timestamptz,
    cancelled_at timestamptz,
    unique (order_id, kind)
);
create index deadlines_pending_idx on deadlines (due_at)
    where fired_at is null and cancelled_at is null;
comment on table deadlines is
    'Per-state timers (TimeoutSeconds): a PAYMENT deadline cancels a CONFIRMED order that is not PAID in time.';

-- Guard used by the workers' state updates: a guarded UPDATE that touched no
-- row means the entity moved on since it was read. The error is raised as a
-- serialization failure (40001) so that the worker retries the transaction
-- with fresh rows instead of dead-lettering the event.
create function of_expect_one(n bigint, what text) returns void
language plpgsql as $$
begin
    if n <> 1 then
        raise exception 'expected one row for %, found %', what, n using errcode = '40001';
    end if;
end
$$;
