-- check.sql: the invariants of a chaos run, over the contract's tables and the
-- records of the topics (loaded by check.py into chaos_records) and the legal
-- transitions (chaos_legal, from `orderctl graph`). One row per invariant:
-- name, violations, an example. psql variable: payment_deadline (seconds).

create temporary table chaos_inputs as
select r.*, coalesce(substring(r.headers from '(?:^|,)ce_id=([^,]*)'), chaos_json(r.value)->>'id') ce_id,
       coalesce(substring(r.headers from '(?:^|,)ce_type=([^,]*)'), chaos_json(r.value)->>'type') ce_type,
       chaos_json(r.value)->>'source' ce_source,
       case r.base when 'order.created' then 'order-created' when 'order.status' then 'order-status'
                   else 'return-requested' end consumer
from chaos_records r where not r.dlq;
create index on chaos_inputs (ce_id);
analyze chaos_inputs;

create temporary table chaos_changed as
select i.key, i.partition, i."offset", i.ce_id, chaos_json(i.value) d
from chaos_inputs i where i.base = 'order.status' and i.ce_type = 'order.status.changed';

create temporary table chaos_result (n serial, name text, violations bigint, example text);

-- 1. One order per order.created ce_id, and none without one.
insert into chaos_result (name, violations, example)
select 'one order per order.created ce_id (none without its event)', count(*), min(x)
from (select 'ce_id ' || s.source_event_id || ': ' || count(*) || ' orders' x
        from orders s group by s.source_event_id having count(*) > 1
      union all
      select 'order ' || o.id || ' has no order.created record (' || o.source_event_id || ')'
        from orders o
       where not exists (select 1 from chaos_inputs i where i.ce_id = o.source_event_id
                           and i.ce_type = 'order.created')) v;

-- 2. No order or return stuck where orderflow has to move it.
insert into chaos_result (name, violations, example)
select 'no order or return stuck in a non-resting status', count(*), min(x)
from (select 'order ' || id || ' is ' || status x from orders
       where status in ('CREATED', 'INVENTORY_RESERVED')
          or (status = 'CONFIRMED'
              and confirmed_at < now() - make_interval(secs => :payment_deadline + 60))
      union all
      select 'return ' || id || ' is ' || status from returns
       where status not in ('REFUND_COMPLETED', 'REJECTED')
      union all
      select e.machine || ' execution ' || e.id || ' still RUNNING for order ' || e.order_id
        from executions e
       where e.status = 'RUNNING' and e.machine in ('OrderProcess', 'ReturnRefund')) v;

-- 3. Every applied transition is an edge of the machine's table.
insert into chaos_result (name, violations, example)
select 'every applied transition legal per the transition table', count(*), min(x)
from (select e.machine || ' ' || coalesce(h.from_state, '[*]') || ' -> ' || h.to_state
             || ' by ' || h.step x
        from execution_history h join executions e on e.id = h.execution_id
       where h.outcome = 'applied' and h.to_state is not null
         and not exists (
             select 1 from chaos_legal l
              where l.machine = case when e.machine = 'ReturnRefund' then 'return' else 'order' end
                and l.from_state is not distinct from h.from_state and l.to_state = h.to_state
                and (l.step = h.step or h.step = 'Start'))) v;

-- 4. Versions: +1 per applied transition; on the topic one event per version,
-- 1..version, the last one carrying the order's status.
insert into chaos_result (name, violations, example)
select 'versions +1 per transition (history and order.status.changed)', count(*), min(x)
from (select 'order ' || o.id || ' version ' || o.version || ' but ' || count(h.*)
             || ' applied transitions' x
        from orders o
        join executions e on e.order_id = o.id and e.machine in ('OrderProcess', 'OrderUpdate')
        left join execution_history h on h.execution_id = e.id and h.outcome = 'applied'
                  and h.to_state is not null and h.step <> 'Start'
       group by o.id, o.version having count(h.*) <> o.version
      union all
      select 'order ' || o.id || ': ' || coalesce(c.n, 0) || ' distinct version(s) on the topic, '
             || coalesce(c.ids, 0) || ' ce_id(s), max ' || coalesce(c.top, 0) || ', version '
             || o.version || coalesce(', missing ' || (
                 select string_agg(v::text || ' (' || coalesce((
                            select h.step || ' ' || coalesce(h.from_state, '') || '->' || h.to_state
                                   || ' by ' || coalesce(h.topic, '?') || ' ' || coalesce(h.event_id, '?')
                              from execution_history h join executions e on e.id = h.execution_id
                             where e.order_id = o.id and h.outcome = 'applied'
                               and h.to_state is not null and h.step <> 'Start'
                             order by h.at, h.seq offset v - 1 limit 1), '?') || ')', ', ')
                   from generate_series(1, o.version) v
                  where not exists (select 1 from chaos_changed c2 where c2.key = o.id::text
                                      and (c2.d->>'version')::int = v)), '')
        from orders o
        left join (select key, count(distinct (d->>'version')::int) n, count(distinct ce_id) ids,
                          max((d->>'version')::int) top
                     from chaos_changed group by key) c on c.key = o.id::text
       where c.n is distinct from o.version or c.ids is distinct from o.version
          or c.top is distinct from o.version
      union all
      select 'order ' || o.id || ' is ' || o.status || ', its last event says ' || (c.d->>'status')
        from orders o join chaos_changed c on c.key = o.id::text
                     and (c.d->>'version')::int = o.version
       where c.d->>'status' <> o.status) v;

-- 5. Stock never negative and conserved.
insert into chaos_result (name, violations, example)
select 'stock never negative and conserved (initial = stock + held - returned)', count(*), min(x)
from (select p.id || ': initial ' || s.stock || ', now ' || p.stock || ' + held '
             || coalesce(h.q, 0) || ' - returned ' || coalesce(r.q, 0) x
        from products p
        join chaos_initial_stock s on s.id = p.id
        left join (select product_id, sum(quantity) q from order_items where reserved
                    group by 1) h on h.product_id = p.id
        left join (select ri.product_id, sum(ri.quantity) q
                     from return_items ri join returns rt on rt.id = ri.return_id
                    where rt.status in ('RETURN_PROCESSED', 'REFUND_INITIATED', 'REFUND_PROCESSED',
                                        'REFUND_COMPLETED')
                    group by 1) r on r.product_id = p.id
       where p.stock < 0 or s.stock <> p.stock + coalesce(h.q, 0) - coalesce(r.q, 0)) v;

-- 6. Compensation once per cancellation: stock released, a refund only when paid.
insert into chaos_result (name, violations, example)
select 'compensation once per cancellation', count(*), min(x)
from (select 'order ' || o.id || ' (' || o.status || ', paid ' || p.paid || '): '
             || count(f.*) || ' cancellation refund(s)' x
        from orders o
        cross join lateral (
            select exists (select 1 from executions e join execution_history h on h.execution_id = e.id
                            where e.order_id = o.id and h.outcome = 'applied' and h.to_state = 'PAID') paid) p
        left join refunds f on f.order_id = o.id and f.cause = 'CANCELLATION'
       group by o.id, o.status, p.paid
      having count(f.*) <> case when o.status = 'CANCELLED' and p.paid then 1 else 0 end
      union all
      select 'cancelled order ' || order_id || ' still holds ' || product_id
        from order_items i join orders o on o.id = i.order_id
       where o.status in ('CANCELLED', 'REJECTED') and i.reserved) v;

-- 7. One refund per completed return, none for a rejected one, never above what was paid.
insert into chaos_result (name, violations, example)
select 'one refund per return, refunds never above the order total', count(*), min(x)
from (select 'return ' || r.id || ' (' || r.status || '): ' || count(f.*) || ' refund(s)' x
        from returns r left join refunds f on f.return_id = r.id
       group by r.id, r.status
      having count(f.*) <> case when r.status = 'REFUND_COMPLETED' then 1 else 0 end
          or (r.status = 'REFUND_COMPLETED' and min(f.amount_cents) is distinct from min(r.refund_cents))
      union all
      select 'order ' || o.id || ': refunds ' || sum(f.amount_cents) || ' > total ' || o.total_cents
        from orders o join refunds f on f.order_id = o.id
       group by o.id, o.total_cents having sum(f.amount_cents) > o.total_cents) v;

-- 8. Each ce_id has one effect per consumer: no step applied twice for one event.
insert into chaos_result (name, violations, example)
select 'each ce_id one effect per consumer', count(*), min(x)
from (select 'event ' || h.event_id || ' applied ' || count(*) || ' times as ' || h.step
             || ' in execution ' || h.execution_id x
        from execution_history h
       where h.outcome = 'applied' and h.event_id is not null
       group by h.execution_id, h.event_id, h.step having count(*) > 1
      union all
      select 'return.requested ' || source_event_id || ': ' || count(*) || ' returns'
        from returns group by source_event_id having count(*) > 1) v;

-- 9. Every record consumed has its effect or a dead letter. The effect is its
-- ce_id in the consumer's inbox, or, once the inbox row is pruned
-- (--retention-inbox), what the step left for good: the order or return it
-- created (source_event_id) or a history row (event_id). A status event the
-- machine has no automatic step for is consumed as a no-op (no inbox row):
-- its effect is nothing.
create temporary table chaos_effects as
select source_event_id ce_id from orders
union select source_event_id from returns
union select event_id from execution_history where event_id is not null;
create index on chaos_effects (ce_id);
analyze chaos_effects;
create function pg_temp.chaos_actionable(ce_type text, status text) returns boolean
language sql stable as $$
    select exists (select 1 from chaos_legal l
                    where l.machine = case ce_type when 'order.status.changed' then 'order'
                                                   else 'return' end
                      and l.from_state = status and l.trigger = 'auto')
$$;
insert into chaos_result (name, violations, example)
select 'every record has its effect or a dead letter', count(*), min(x)
from (select i.topic || '/' || i.partition || '@' || i."offset" || ' (' || coalesce(i.ce_id, 'no id')
             || ') neither in the inbox of ' || i.consumer || ' nor dead-lettered' x
        from chaos_inputs i
       where not (i.ce_type in ('order.status.changed', 'return.status.changed')
                  and not pg_temp.chaos_actionable(i.ce_type, chaos_json(i.value)->>'status'))
         and not exists (select 1 from inbox b where b.consumer = i.consumer and b.ce_id = i.ce_id)
         and not exists (select 1 from chaos_effects e where e.ce_id = i.ce_id)
         and not exists (select 1 from dead_letters d
                          where d.worker = i.consumer and d.topic = i.topic
                            and d.partition = i.partition and d."offset" = i."offset")) v;

-- 10. Dead letters only for the records that deserve one, each with its DLQ copy.
insert into chaos_result (name, violations, example)
select 'dead letters only for bad records, each on its .dlq topic', count(*), min(x)
from (select 'valid event ' || i.ce_id || ' (' || i.ce_type || ') dead-lettered: ' || d.error_code x
        from dead_letters d
        join chaos_inputs i on i.topic = d.topic and i.partition = d.partition and i."offset" = d."offset"
       where chaos_json(i.value) is not null and coalesce(i.ce_source, '') <> 'chaos/bad'
      union all
      select 'dead letter ' || d.id || ' (' || d.topic || '/' || d.partition || '@' || d."offset"
             || ') has no record on ' || d.topic || '.dlq'
        from dead_letters d
       where not exists (select 1 from chaos_records q
                          where q.dlq and q.headers ~ ('(^|,)dlq_topic=' || d.topic || '(,|$)')
                            and q.headers ~ ('(^|,)dlq_partition=' || d.partition || '(,|$)')
                            and q.headers ~ ('(^|,)dlq_offset=' || d."offset" || '(,|$)'))) v;

-- 11. Per key, order.status.changed versions first appear in increasing order.
insert into chaos_result (name, violations, example)
select 'per-key order of order.status.changed versions on the topic', count(*), min(x)
from (select 'order ' || key || ': version ' || v || ' first at ' || partition || '@' || "offset"
             || ' after version ' || before x
        from (select key, partition, "offset", v,
                     max(v) over (partition by key order by partition, "offset"
                                  rows between unbounded preceding and 1 preceding) before
                from (select key, partition, "offset", (d->>'version')::int v,
                             row_number() over (partition by key, (d->>'version')::int
                                                order by partition, "offset") first
                        from chaos_changed) f
               where first = 1) o
       where before > v) v;

-- 12. The outbox drained, and no row given up (nothing here is too large).
insert into chaos_result (name, violations, example)
select 'outbox drained (no row pending or dead)', count(*),
       min('outbox row ' || id || ' (' || topic || ') ' || case when dead_at is null
           then 'unpublished' else 'dead: ' || coalesce(last_error, '') end)
from outbox where published_at is null;

-- 13. An order naming a late product (p-late-*, which the harness inserts 2 to
-- 10 s after the order, well within park-max-age) waited, parked, and exists
-- once: never REJECTED for UNKNOWN_PRODUCT.
create temporary table chaos_late as
select distinct i.ce_id from chaos_inputs i
 where i.ce_type = 'order.created'
   and jsonb_path_exists(chaos_json(i.value), '$.data.items[*].product_id ? (@ starts with "p-late-")');
insert into chaos_result (name, violations, example)
select 'orders naming a late product created once, not rejected UNKNOWN_PRODUCT', count(*), min(x)
from (select 'order.created ' || l.ce_id || ' (late product): ' || count(o.id) || ' orders' x
        from chaos_late l left join orders o on o.source_event_id = l.ce_id
       group by l.ce_id having count(o.id) <> 1
      union all
      select 'order ' || o.id || ' (' || l.ce_id || ', late product) REJECTED ' || o.status_reason
        from chaos_late l join orders o on o.source_event_id = l.ce_id
       where o.status = 'REJECTED' and o.status_reason = 'UNKNOWN_PRODUCT') v;

-- 14. Nothing parked at the end: every parked key was replayed and removed.
insert into chaos_result (name, violations, example)
select 'nothing parked at the end (parked_keys, parked_events empty)', count(*), min(x)
from (select 'parked key ' || encode(key, 'escape') || ' of ' || consumer || ' (' || error_code
             || ': ' || reason || ')' x
        from parked_keys
      union all
      select 'parked event ' || ce_id || ' of ' || consumer || ' (key ' || encode(key, 'escape')
             || ')'
        from parked_events) v;

select name, violations, coalesce(example, '') from chaos_result order by n;
