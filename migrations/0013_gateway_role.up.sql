-- 0013_gateway_role.up.sql: a least-privilege role for orderflow-gateway
-- (gateway/), which until now needed a DATABASE_URL of some other role.
--
-- The gateway writes nothing to PostgreSQL: it publishes to Kafka and reads
-- the order views (domain/src/views.c: the same queries as orderctl
-- describe/history) and the outbox backlog (gateway/main.c: count of
-- unpublished rows). So it may read those relations and nothing else; not
-- customers (their names and e-mail addresses), not products, not the inbox,
-- dead letters or the payloads in the outbox.
--
-- Like the roles of 0005 it is a NOLOGIN group role, created here when the
-- migrating role may (CREATEROLE) and reused when it exists; a deployment
-- creates a LOGIN member (docker-compose.yml, ops/k8s/README.md):
--
--   create role orderflow_gateway_login login password '...' in role orderflow_gateway;
--
-- tests/integration/test_roles.sh runs the gateway as such a member, checks
-- every statement it sends against these grants and a few refusals.
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'orderflow_gateway') then
        begin
            create role orderflow_gateway nologin;
        exception when duplicate_object or unique_violation then
            -- Created at the same moment by a migration of another database.
            null;
        end;
    end if;
    execute format('grant connect on database %I to orderflow_gateway', current_database());
end
$$;

grant usage on schema public to orderflow_gateway;
-- The order view (domain/src/views.c): the lookups by id and by source event,
-- the overview, items, executions, returns, refunds, deadlines, the timeline.
grant select on orders, order_items, returns, return_items, refunds, deadlines, executions,
    order_overview, order_timeline to orderflow_gateway;
-- The backlog that turns writes away with 503 (count of pending rows: not
-- published, not dead).
grant select (published_at, dead_at) on outbox to orderflow_gateway;
