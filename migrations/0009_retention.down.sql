-- 0009_retention.down.sql: no delete grants for the workers, the prune
-- indexes gone and the BRIN index of 0007 on inbox.processed_at back.
revoke delete on deadlines from orderflow_order_status;
revoke update (record_md5) on dead_letters
    from orderflow_order_created, orderflow_order_status, orderflow_return_requested;
revoke update (processed_at) on inbox
    from orderflow_order_created, orderflow_order_status, orderflow_return_requested;
revoke delete on inbox, outbox, dead_letters, executions
    from orderflow_order_created, orderflow_order_status, orderflow_return_requested;
drop index executions_stopped_at_idx;
drop index deadlines_done_idx;
drop index dead_letters_redriven_idx;
drop index outbox_published_at_idx;
create index inbox_processed_at_brin on inbox using brin (processed_at);
drop index inbox_consumer_processed_at_idx;
comment on table inbox is
    'CloudEvent ids each consumer has processed, written in the transaction of the effect, so a redelivered ce_id has effect once; pruned by processed_at.';
