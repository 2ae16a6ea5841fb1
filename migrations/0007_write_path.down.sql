-- 0007_write_path.down.sql: the B-tree on inbox.processed_at, the unique
-- index on outbox.seq, the default fillfactor and the index on orders.status
-- back, and order-created without update on orders' timestamps.
revoke update (confirmed_at, delivered_at) on orders from orderflow_order_created;
drop index inbox_processed_at_brin;
create index inbox_processed_at_idx on inbox (processed_at);
alter table outbox add constraint outbox_seq_key unique (seq);
alter table executions reset (fillfactor);
alter table order_items reset (fillfactor);
alter table orders reset (fillfactor);
create index orders_status_idx on orders (status);
