-- 0005_roles.down.sql: takes back every privilege 0005_roles.up.sql granted
-- in this database, then drops each of the four roles only when nothing
-- else holds on to it: no privileges or objects in another database of the
-- cluster, no LOGIN members (dropping a group would silently strip a
-- deployment's logins of their grants), and a migrating role that may drop
-- roles at all. A role that stays is reported with a NOTICE.

alter default privileges in schema public revoke select on tables from orderflow_orderctl;
revoke all on all tables in schema public from orderflow_order_created, orderflow_order_status,
    orderflow_return_requested, orderflow_orderctl;
revoke usage on schema public from orderflow_order_created, orderflow_order_status,
    orderflow_return_requested, orderflow_orderctl;

do $$
declare
    r text;
    why text;
begin
    execute format('revoke connect on database %I from orderflow_order_created, orderflow_order_status,'
                   ' orderflow_return_requested, orderflow_orderctl', current_database());
    foreach r in array array['orderflow_order_created', 'orderflow_order_status',
                             'orderflow_return_requested', 'orderflow_orderctl'] loop
        why := case
            when not exists (select 1 from pg_roles where rolname = current_user
                              and (rolcreaterole or rolsuper))
                then 'the migrating role may not drop roles'
            when exists (select 1 from pg_shdepend d join pg_roles o on o.oid = d.refobjid
                          where o.rolname = r and d.refclassid = 'pg_authid'::regclass)
                then 'it still has privileges or objects in another database'
            when exists (select 1 from pg_auth_members m join pg_roles o on o.oid = m.roleid
                          where o.rolname = r)
                then 'it has members'
        end;
        if why is null then
            execute format('drop role %I', r);
        else
            raise notice 'role "%" kept: %', r, why;
        end if;
    end loop;
end
$$;
