-- 0006_row_sets.down.sql: the (machine, order_id) index of 0001 back, and no
-- guard of the set-based statements.
create unique index executions_one_per_order_by_machine on executions (machine, order_id)
    where return_id is null;
drop index executions_one_per_order;
alter index executions_one_per_order_by_machine rename to executions_one_per_order;
drop function of_expect_rows(bigint, bigint, text);
