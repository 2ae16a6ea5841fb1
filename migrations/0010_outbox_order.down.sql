-- 0010_outbox_order.down.sql: back to unordered relaying without a failure cap.
revoke update (held, failures, dead_at, last_error) on outbox
    from orderflow_order_created, orderflow_order_status, orderflow_return_requested;
drop index outbox_pending_key_idx, outbox_held_idx, outbox_pending_created_idx;
alter table outbox drop column dead_at, drop column failures, drop column held;
