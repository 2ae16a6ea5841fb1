-- 0018_trace.down.sql: drops what 0018 added. The view goes back to the
-- columns of 0002 (a view cannot drop columns in place, so it is created
-- again, with the grants it had).
drop view order_timeline;
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
grant select on order_timeline to orderflow_orderctl, orderflow_gateway;

revoke select (execution_id, seq, trace_id) on execution_history from orderflow_gateway;
alter table returns drop column traceparent;
alter table orders drop column traceparent;
drop index execution_history_trace_id_idx;
alter table execution_history
    drop column parent_span_id,
    drop column span_id,
    drop column trace_id;
drop function of_trace_hex(uuid);
drop function of_span_hex(bigint);
drop function of_span_in(text);
