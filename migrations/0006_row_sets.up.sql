-- 0006_row_sets.up.sql: the guard of the workers' set-based statements. One
-- statement now updates the rows of a whole batch (arrays in, unnest); when
-- it updates fewer rows than it was given, some entity moved on since it was
-- read. Like of_expect_one, the error is a serialization failure (40001), so
-- the worker retries the transaction with fresh rows instead of
-- dead-lettering its events.
create function of_expect_rows(n bigint, expected bigint, what text) returns void
language plpgsql as $$
begin
    if n <> expected then
        raise exception 'expected % row(s) for %, found %', expected, what, n using errcode = '40001';
    end if;
end
$$;
comment on function of_expect_rows(bigint, bigint, text) is
    'Raises 40001 unless a set-based guarded update touched exactly the rows it was given.';

-- One order's executions by order_id first: the set-based statements look
-- executions up by order (history: the order's latest; updates: by order and
-- machine), and with machine first a generic plan scanned the whole
-- (machine, order_id) index for an order_id alone. Still unique per (order,
-- machine) among the executions that are no return's.
create unique index executions_one_per_order_by_order on executions (order_id, machine)
    where return_id is null;
drop index executions_one_per_order;
alter index executions_one_per_order_by_order rename to executions_one_per_order;
