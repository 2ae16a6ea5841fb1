-- 0002_views.up.sql: read-only views for operators and the demo: one row per
-- order with its status and timings, and one timeline row per history entry.

create view order_overview as
select o.id as order_id,
       o.customer_id,
       o.status,
       o.version,
       o.status_reason,
       o.total_cents,
       o.currency,
       o.correlation_id,
       o.created_at,
       o.updated_at,
       o.confirmed_at,
       o.delivered_at,
       op.status as order_process,
       ou.status as order_update,
       extract(epoch from (o.confirmed_at - o.created_at)) * 1000 as ms_to_confirm,
       (select count(*) from execution_history h join executions e on e.id = h.execution_id
         where e.order_id = o.id and h.outcome = 'rejected') as rejected_updates
  from orders o
  left join executions op on op.order_id = o.id and op.machine = 'OrderProcess'
  left join executions ou on ou.order_id = o.id and ou.machine = 'OrderUpdate';
comment on view order_overview is
    'One row per order: current status, version, timings and the status of its OrderProcess and OrderUpdate executions.';

create view order_timeline as
select e.order_id,
       e.return_id,
       e.machine,
       e.status as execution_status,
       h.seq,
       h.at,
       h.step,
       h.from_state,
       h.to_state,
       h.outcome,
       h.event_id,
       h.topic,
       h.partition,
       h."offset",
       h.detail
  from execution_history h
  join executions e on e.id = h.execution_id;
comment on view order_timeline is
    'Every transition and rejected update of every execution, with the event (and Kafka position) that caused it.';
