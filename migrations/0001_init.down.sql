-- 0001_init.down.sql: drops everything 0001_init.up.sql created, dependents
-- first (their indexes and constraints go with them).
--
-- Applied by `orderctl migrate down --to 0` inside one transaction.

drop function of_expect_one(bigint, text);
drop table deadlines;
drop table dead_letters;
drop table outbox;
drop table inbox;
drop table execution_history;
drop table executions;
drop table refunds;
drop table return_items;
drop table returns;
drop table order_items;
drop table orders;
drop table products;
drop table customers;
