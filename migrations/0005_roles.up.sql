-- 0005_roles.up.sql: one database role per process, each granted only what
-- the statements of that process need (least privilege), so that a worker
-- that is compromised or buggy cannot touch another worker's tables.
--
-- The four roles are NOLOGIN group roles; nobody connects as them directly.
-- A deployment creates LOGIN members that inherit the grants, one per process
-- (and a second one while rotating a password), for example:
--
--   create role orderflow_order_created_login login password '...' in role orderflow_order_created;
--   create role orderflow_order_status_login login password '...' in role orderflow_order_status;
--   create role orderflow_return_requested_login login password '...' in role orderflow_return_requested;
--   create role orderflow_orderctl_login login password '...' in role orderflow_orderctl;
--
-- and gives each process a DATABASE_URL naming its member (docker-compose.yml
-- and ops/k8s/README.md do exactly this). To rotate: create "..._login2" in
-- the same group, switch the secret, restart, drop "..._login".
--
-- | role                       | used by                      | may                                     |
-- |----------------------------|------------------------------|-----------------------------------------|
-- | orderflow_order_created    | orderflow-order-created      | read catalogue ids/prices, create orders |
-- | orderflow_order_status     | orderflow-order-status       | advance orders, reserve/release stock, deadlines, cancellation refunds |
-- | orderflow_return_requested | orderflow-return-requested   | returns, restock, return refunds         |
-- | orderflow_orderctl         | orderctl describe/history/dlq | read everything; record dead-letter redrives |
--
-- Every worker also gets the runtime's tables: inbox (check, record), outbox
-- (insert, mark published, claim for the sweep) and dead_letters (insert).
-- `orderctl migrate` is not one of these roles: it runs as the schema owner
-- (the role that applied 0001..0004), which also runs this file.
--
-- Roles are objects of the whole cluster, not of one database. Two cases:
--   * the migrating role has CREATEROLE (docker-compose, ops/stack): the roles
--     are created here when they do not exist yet;
--   * a DBA created the four roles beforehand (managed PostgreSQL where the
--     schema owner may not create roles): this file only grants.
-- Either way a role that already exists is reused, which is also what makes
-- a second database in the same cluster (tests, scratch databases) work; this
-- is the one place where the "no IF NOT EXISTS" rule of migrations/README.md
-- does not apply, because a role does not belong to this database.
--
-- How the grants were derived: every statement each process prepares
-- (of_db_stmt tables in workers/*/main.c, workers/order-status/deadlines.c,
-- common/src/{outbox,inbox,dlq}.c, OF_MACHINE_STMTS in machine.h).
-- tests/integration/test_roles.sh checks them against the statements the
-- workers really send (it captures them from the server log) and proves
-- that a few things outside the grants are refused.
--
-- Notes on PostgreSQL rules that shape the grants below:
--   * SELECT ... FOR UPDATE needs UPDATE on at least one column of the table.
--   * UPDATE t SET c = ... WHERE d = ... needs SELECT on the columns it reads.
--   * identity columns (outbox.seq, dead_letters.id, deadlines.id) need no
--     privilege on their sequences; there are no serial columns.
--   * of_expect_one() is executable by PUBLIC (the default for functions).

do $$
declare
    r text;
begin
    foreach r in array array['orderflow_order_created', 'orderflow_order_status',
                             'orderflow_return_requested', 'orderflow_orderctl'] loop
        if not exists (select 1 from pg_roles where rolname = r) then
            begin
                execute format('create role %I nologin', r);
            exception when duplicate_object or unique_violation then
                -- Created at the same moment by a migration of another database.
                null;
            end;
        end if;
    end loop;
end
$$;

-- Hardened clusters revoke CONNECT from PUBLIC; these roles need it here.
do $$
begin
    execute format('grant connect on database %I to orderflow_order_created, orderflow_order_status,'
                   ' orderflow_return_requested, orderflow_orderctl', current_database());
end
$$;

grant usage on schema public to orderflow_order_created, orderflow_order_status,
    orderflow_return_requested, orderflow_orderctl;

-- The worker runtime (common/src/inbox.c, outbox.c, dlq.c), for all three workers.
grant select, insert on inbox to orderflow_order_created, orderflow_order_status,
    orderflow_return_requested;
grant select, insert, update (published_at, attempts, claimed_until) on outbox
    to orderflow_order_created, orderflow_order_status, orderflow_return_requested;
grant select, insert on dead_letters to orderflow_order_created, orderflow_order_status,
    orderflow_return_requested;

-- The machines' executions and history (OF_MACHINE_STMTS), for all three workers.
grant select, insert, update (current_state, status, stopped_at, error) on executions
    to orderflow_order_created, orderflow_order_status, orderflow_return_requested;
grant select, insert on execution_history to orderflow_order_created, orderflow_order_status,
    orderflow_return_requested;

-- order-created: CreateOrder. Reads only the ids of customers (not their
-- names or e-mail addresses) and the ids and prices of products; creates the
-- order and its lines. The order machine's statements (order_set_state) are
-- prepared by this worker too, hence the update columns on orders.
grant select (id) on customers to orderflow_order_created;
grant select (id, price_cents) on products to orderflow_order_created;
grant select, insert, update (status, version, status_reason, updated_at) on orders
    to orderflow_order_created;
grant insert on order_items to orderflow_order_created;

-- order-status: UpdateInventory (reserve), OrderCompleted, the order
-- lifecycle, cancellation (release, refund) and the payment deadlines.
grant select, update (status, version, status_reason, updated_at, confirmed_at, delivered_at)
    on orders to orderflow_order_status;
grant select, update (reserved) on order_items to orderflow_order_status;
grant select, update (stock, updated_at) on products to orderflow_order_status;
grant select, insert, update (cancelled_at, fired_at) on deadlines to orderflow_order_status;
grant select, insert on refunds to orderflow_order_status;

-- return-requested: ReturnRefund. It locks the order rows it checks (FOR
-- UPDATE) but never changes an order: PostgreSQL requires UPDATE on some
-- column for the lock, so it gets the harmless updated_at and nothing else.
grant select, update (updated_at) on orders to orderflow_return_requested;
grant select on order_items to orderflow_return_requested;
grant select, update (stock, updated_at) on products to orderflow_return_requested;
grant select, insert, update (status, version, status_reason, updated_at, refund_cents)
    on returns to orderflow_return_requested;
grant select, insert on return_items to orderflow_return_requested;
grant select, insert on refunds to orderflow_return_requested;

-- orderctl (operator commands other than migrate: describe, history, dlq,
-- migrate status): read everything, tables and views, including the ones
-- later migrations create (default privileges of the role running the
-- migrations). `dlq redrive` republishes the original record to Kafka itself,
-- then records it: a redrives row (0004) and the dead letter's counters.
grant select on all tables in schema public to orderflow_orderctl;
alter default privileges in schema public grant select on tables to orderflow_orderctl;
grant update (redriven_at, redrive_count) on dead_letters to orderflow_orderctl;
grant insert on redrives to orderflow_orderctl;
