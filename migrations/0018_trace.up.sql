-- 0018_trace.up.sql: trace context across the choreography (W3C Trace
-- Context, carried by the CloudEvents distributed tracing extension as
-- ce_traceparent / ce_tracestate; docs/events.md "Trace context").
--
-- Every execution_history row is a span: the trace it belongs to, its own
-- span id and the span that caused it (the parent-id of the event's
-- traceparent, or the entity's previous step; NULL for the root of a trace).
-- They are stored compactly, a trace id as uuid (16 bytes) and span ids as
-- bigint (8 bytes, the 64 bits of the hex id, two's complement); the
-- functions below convert, and order_timeline shows the hex the headers
-- carry. Rows written before this migration have NULLs.
--
-- orders.traceparent and returns.traceparent keep the span of the entity's
-- last step (the machines' set-state statements write it, creation inserts
-- it), so that an event without a trace context of its own (an upstream
-- update, a deadline, a return request) goes on with the entity's trace.
--
-- The index on trace_id serves `orderctl history --trace ID`. The ids
-- orderflow draws start with the time (common/include/orderflow/trace.h), so
-- they are inserted at the right edge of it; trace ids from upstream land
-- anywhere. Building it reads all of execution_history and blocks writes to
-- it meanwhile: on a large table, apply this migration at a quiet time.

-- '00f067aa0ba902b7' <-> bigint, and a uuid as the 32 hex digits of a trace-id.
create function of_span_in(text) returns bigint
    language sql immutable strict parallel safe
    return ('x' || $1)::bit(64)::bigint;
create function of_span_hex(bigint) returns text
    language sql immutable strict parallel safe
    return lpad(to_hex($1), 16, '0');
create function of_trace_hex(uuid) returns text
    language sql immutable strict parallel safe
    return replace($1::text, '-', '');
comment on function of_span_in(text) is
    'A span id (16 hex digits, as in a traceparent) as stored in execution_history.';
comment on function of_span_hex(bigint) is
    'A stored span id as the 16 hex digits of a traceparent.';
comment on function of_trace_hex(uuid) is
    'A stored trace id as the 32 hex digits of a traceparent.';

alter table execution_history
    add column trace_id uuid,
    add column span_id bigint,
    add column parent_span_id bigint;
create index execution_history_trace_id_idx on execution_history (trace_id);
comment on column execution_history.trace_id is
    'W3C trace id of the step (of_trace_hex() shows it as in ce_traceparent): the event''s, the entity''s, or a new one.';
comment on column execution_history.span_id is
    'The step''s own span id (of_span_hex()), drawn for this row; the events the step published carry it as parent-id.';
comment on column execution_history.parent_span_id is
    'The span that caused the step: the parent-id of the event''s ce_traceparent, or the entity''s previous step; NULL for the root of a trace.';

alter table orders add column traceparent text;
alter table returns add column traceparent text;
comment on column orders.traceparent is
    'traceparent of the order''s last step: where a step goes on when its event carries no trace context.';
comment on column returns.traceparent is
    'traceparent of the return''s last step: where a step goes on when its event carries no trace context.';

-- The machines' set-state statements (OF_SQL_SET_STATE) write it; order-created
-- prepares the order machine's too. Inserts are granted on the whole table.
grant update (traceparent) on orders to orderflow_order_created, orderflow_order_status;
grant update (traceparent) on returns to orderflow_return_requested;
-- The order view shows each execution's trace (its first row's): the gateway
-- reads that much of execution_history, and its timeline through the view.
grant select (execution_id, seq, trace_id) on execution_history to orderflow_gateway;

-- The timeline with the trace of every row; the columns are added at the end
-- (a replaced view keeps its grants).
create or replace view order_timeline as
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
       h.detail,
       of_trace_hex(h.trace_id) as trace_id,
       of_span_hex(h.span_id) as span_id,
       of_span_hex(h.parent_span_id) as parent_span_id
  from execution_history h
  join executions e on e.id = h.execution_id;
comment on view order_timeline is
    'Every transition and rejected update of every execution, with the event (and Kafka position) that caused it and its span (trace, span, parent span as hex).';
