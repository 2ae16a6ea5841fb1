-- 0013_gateway_role.down.sql: takes back what 0013 granted, then drops the
-- role under the same conditions as 0005_roles.down.sql (no members, nothing
-- in another database, a migrating role that may drop roles); a role that
-- stays is reported with a NOTICE.
revoke all on all tables in schema public from orderflow_gateway;
revoke usage on schema public from orderflow_gateway;

do $$
declare
    why text;
begin
    execute format('revoke connect on database %I from orderflow_gateway', current_database());
    why := case
        when not exists (select 1 from pg_roles where rolname = current_user
                          and (rolcreaterole or rolsuper))
            then 'the migrating role may not drop roles'
        when exists (select 1 from pg_shdepend d join pg_roles o on o.oid = d.refobjid
                      where o.rolname = 'orderflow_gateway' and d.refclassid = 'pg_authid'::regclass)
            then 'it still has privileges or objects in another database'
        when exists (select 1 from pg_auth_members m join pg_roles o on o.oid = m.roleid
                      where o.rolname = 'orderflow_gateway')
            then 'it has members'
    end;
    if why is null then
        drop role orderflow_gateway;
    else
        raise notice 'role "orderflow_gateway" kept: %', why;
    end if;
end
$$;
