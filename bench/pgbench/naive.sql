-- naive.sql: pgbench model of one order through OrderProcess the naive way:
-- one transaction per step (CreateOrder, UpdateInventory, OrderCompleted),
-- one statement per row, as a row-at-a-time engine would run them (the
-- engine before issue 11). One script run is one order. Run by bench/suite:
--   pgbench -n -M prepared -f naive.sql -T 20 -c 1
\set r random(1, 9000000000000000)
-- CreateOrder
BEGIN;
SELECT ce_id FROM inbox WHERE consumer = 'pgbench-created' AND ce_id = 'pb-c-' || :r;
SELECT id FROM customers WHERE id = 'c-bench';
SELECT id, price_cents FROM products WHERE id = 'p-bench';
INSERT INTO orders (id, customer_id, status, version, total_cents, currency, correlation_id, source_event_id)
  VALUES (md5(:r::text)::uuid, 'c-bench', 'CREATED', 1, 100, 'USD', 'pb-' || :r, 'pb-' || :r);
INSERT INTO order_items (order_id, line, product_id, quantity, unit_price_cents)
  VALUES (md5(:r::text)::uuid, 1, 'p-bench', 1, 100);
INSERT INTO executions (id, machine, order_id, status, current_state, input)
  VALUES (md5('p' || :r)::uuid, 'OrderProcess', md5(:r::text)::uuid, 'RUNNING', 'CREATED', '{}');
INSERT INTO execution_history (execution_id, seq, step, to_state, event_id, topic, partition, "offset", detail)
  SELECT md5('p' || :r)::uuid, coalesce(max(seq), 0) + 1, 'CreateOrder', 'CREATED', 'pb-c-' || :r, 'order.created', 0, 0, '{}'
    FROM execution_history WHERE execution_id = md5('p' || :r)::uuid;
INSERT INTO outbox (id, topic, key, payload) VALUES (gen_random_uuid(), 'order.status', 'k'::bytea, '{"status":"CREATED"}'::bytea);
INSERT INTO inbox (consumer, ce_id, ce_type, topic, partition, "offset")
  VALUES ('pgbench-created', 'pb-c-' || :r, 'order.created', 'order.created', 0, 0);
COMMIT;
-- UpdateInventory
BEGIN;
SELECT ce_id FROM inbox WHERE consumer = 'pgbench-status' AND ce_id = 'pb-s1-' || :r;
SELECT id, status, version FROM orders WHERE id = md5(:r::text)::uuid FOR UPDATE;
SELECT product_id, quantity, reserved FROM order_items WHERE order_id = md5(:r::text)::uuid;
SELECT id, stock FROM products WHERE id = 'p-bench' FOR UPDATE;
UPDATE products SET stock = stock - 1 WHERE id = 'p-bench';
UPDATE order_items SET reserved = true WHERE order_id = md5(:r::text)::uuid;
UPDATE orders SET status = 'INVENTORY_RESERVED', version = version + 1 WHERE id = md5(:r::text)::uuid AND version = 1;
UPDATE executions SET current_state = 'INVENTORY_RESERVED' WHERE order_id = md5(:r::text)::uuid AND machine = 'OrderProcess' AND return_id IS NULL;
INSERT INTO execution_history (execution_id, seq, step, from_state, to_state, event_id, topic, partition, "offset", detail)
  SELECT md5('p' || :r)::uuid, coalesce(max(seq), 0) + 1, 'UpdateInventory', 'CREATED', 'INVENTORY_RESERVED', 'pb-s1-' || :r, 'order.status', 0, 0, '{}'
    FROM execution_history WHERE execution_id = md5('p' || :r)::uuid;
INSERT INTO outbox (id, topic, key, payload) VALUES (gen_random_uuid(), 'order.status', 'k'::bytea, '{"status":"INVENTORY_RESERVED"}'::bytea);
INSERT INTO inbox (consumer, ce_id, ce_type, topic, partition, "offset")
  VALUES ('pgbench-status', 'pb-s1-' || :r, 'order.status.changed', 'order.status', 0, 0);
COMMIT;
-- OrderCompleted
BEGIN;
SELECT ce_id FROM inbox WHERE consumer = 'pgbench-status' AND ce_id = 'pb-s2-' || :r;
SELECT id, status, version FROM orders WHERE id = md5(:r::text)::uuid FOR UPDATE;
UPDATE orders SET status = 'CONFIRMED', version = version + 1 WHERE id = md5(:r::text)::uuid AND version = 2;
UPDATE orders SET confirmed_at = now() WHERE id = md5(:r::text)::uuid;
INSERT INTO deadlines (order_id, kind, due_at) VALUES (md5(:r::text)::uuid, 'PAYMENT', now() + interval '30 minutes');
UPDATE executions SET current_state = 'CONFIRMED', status = 'SUCCEEDED', stopped_at = now() WHERE order_id = md5(:r::text)::uuid AND machine = 'OrderProcess' AND return_id IS NULL;
INSERT INTO executions (id, machine, order_id, status, current_state) VALUES (md5('u' || :r)::uuid, 'OrderUpdate', md5(:r::text)::uuid, 'RUNNING', 'CONFIRMED');
INSERT INTO execution_history (execution_id, seq, step, from_state, to_state, event_id, topic, partition, "offset", detail)
  SELECT md5('p' || :r)::uuid, coalesce(max(seq), 0) + 1, 'OrderCompleted', 'INVENTORY_RESERVED', 'CONFIRMED', 'pb-s2-' || :r, 'order.status', 0, 0, '{}'
    FROM execution_history WHERE execution_id = md5('p' || :r)::uuid;
INSERT INTO execution_history (execution_id, seq, step, from_state, to_state, event_id, topic, partition, "offset", detail)
  VALUES (md5('u' || :r)::uuid, 1, 'Start', 'INVENTORY_RESERVED', 'CONFIRMED', 'pb-s2-' || :r, 'order.status', 0, 0, '{}');
INSERT INTO outbox (id, topic, key, payload) VALUES (gen_random_uuid(), 'order.status', 'k'::bytea, '{"status":"CONFIRMED"}'::bytea);
INSERT INTO inbox (consumer, ce_id, ce_type, topic, partition, "offset")
  VALUES ('pgbench-status', 'pb-s2-' || :r, 'order.status.changed', 'order.status', 0, 0);
COMMIT;
