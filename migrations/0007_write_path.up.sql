-- 0007_write_path.up.sql: less work per row on the tables every event writes.
--
-- Room for the updates the workers make, so that they are heap-only (HOT):
-- the new row version goes on the same page and no index gets a new entry. An
-- order's row is updated at every status change, its items when stock is
-- reserved, its executions at every step; at the default fillfactor (100)
-- each page is full when written, so every one of those updates moved the row
-- to another page and inserted into every index of the table. Postgres prunes
-- the dead versions when it next touches the page.
--
-- orders_status_idx goes: no statement of the workers, orderctl or the views
-- filters orders by status, and while a column is indexed no update of it is
-- HOT.
drop index orders_status_idx;
alter table orders set (fillfactor = 70);
alter table order_items set (fillfactor = 80);
alter table executions set (fillfactor = 70);

-- outbox.seq comes from its identity sequence, so the unique index on it
-- checked nothing; the relay reads unpublished rows in seq order through
-- outbox_unpublished_idx.
alter table outbox drop constraint outbox_seq_key;

-- The inbox is pruned by age (docs/operations.md). Rows are appended in
-- processed_at order, so a BRIN index finds old ones at a fraction of the cost
-- of a B-tree entry per consumed event.
drop index inbox_processed_at_idx;
create index inbox_processed_at_brin on inbox using brin (processed_at);

-- The order machine's state update now sets confirmed_at and delivered_at
-- itself when an order becomes CONFIRMED or DELIVERED (one row version per
-- transition instead of two). order-created prepares that statement too, and
-- PostgreSQL checks column privileges when a statement is planned.
grant update (confirmed_at, delivered_at) on orders to orderflow_order_created;
