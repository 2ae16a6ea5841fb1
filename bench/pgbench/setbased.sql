-- setbased.sql: pgbench model of 100 orders through OrderProcess set-based:
-- the same three transactions per step as naive.sql, but each statement
-- handles the 100 orders at once (unnest / generate_series), as the engine
-- does per wave. One script run is 100 orders. Run by bench/suite:
--   pgbench -n -M prepared -f setbased.sql -T 20 -c 1
\set r random(1, 90000000000000)
-- CreateOrder
BEGIN;
SELECT ce_id FROM inbox WHERE consumer = 'pgbench-created' AND ce_id = ANY (ARRAY(SELECT 'pb-c-' || (:r::bigint * 100 + g) FROM generate_series(1, 100) g));
SELECT id FROM customers WHERE id = 'c-bench';
SELECT id, price_cents FROM products WHERE id = 'p-bench';
INSERT INTO orders (id, customer_id, status, version, total_cents, currency, correlation_id, source_event_id)
  SELECT md5((:r::bigint * 100 + g)::text)::uuid, 'c-bench', 'CREATED', 1, 100, 'USD', 'pb-' || (:r::bigint * 100 + g), 'pb-' || (:r::bigint * 100 + g) FROM generate_series(1, 100) g;
INSERT INTO order_items (order_id, line, product_id, quantity, unit_price_cents)
  SELECT md5((:r::bigint * 100 + g)::text)::uuid, 1, 'p-bench', 1, 100 FROM generate_series(1, 100) g;
INSERT INTO executions (id, machine, order_id, status, current_state, input)
  SELECT md5('p' || (:r::bigint * 100 + g))::uuid, 'OrderProcess', md5((:r::bigint * 100 + g)::text)::uuid, 'RUNNING', 'CREATED', '{}' FROM generate_series(1, 100) g;
INSERT INTO execution_history (execution_id, seq, step, to_state, event_id, topic, partition, "offset", detail)
  SELECT md5('p' || (:r::bigint * 100 + g))::uuid, 1, 'CreateOrder', 'CREATED', 'pb-c-' || (:r::bigint * 100 + g), 'order.created', 0, 0, '{}' FROM generate_series(1, 100) g;
INSERT INTO outbox (id, topic, key, payload) SELECT gen_random_uuid(), 'order.status', 'k'::bytea, '{"status":"CREATED"}'::bytea FROM generate_series(1, 100) g;
INSERT INTO inbox (consumer, ce_id, ce_type, topic, partition, "offset")
  SELECT 'pgbench-created', 'pb-c-' || (:r::bigint * 100 + g), 'order.created', 'order.created', 0, 0 FROM generate_series(1, 100) g;
COMMIT;
-- UpdateInventory
BEGIN;
SELECT ce_id FROM inbox WHERE consumer = 'pgbench-status' AND ce_id = ANY (ARRAY(SELECT 'pb-s1-' || (:r::bigint * 100 + g) FROM generate_series(1, 100) g));
SELECT id, status, version FROM orders WHERE id = ANY (ARRAY(SELECT md5((:r::bigint * 100 + g)::text)::uuid FROM generate_series(1, 100) g)) ORDER BY id FOR UPDATE;
SELECT order_id, product_id, quantity, reserved FROM order_items WHERE order_id = ANY (ARRAY(SELECT md5((:r::bigint * 100 + g)::text)::uuid FROM generate_series(1, 100) g));
SELECT id, stock FROM products WHERE id = 'p-bench' FOR UPDATE;
UPDATE products SET stock = stock - 100 WHERE id = 'p-bench';
UPDATE order_items SET reserved = true WHERE order_id = ANY (ARRAY(SELECT md5((:r::bigint * 100 + g)::text)::uuid FROM generate_series(1, 100) g));
UPDATE orders SET status = 'INVENTORY_RESERVED', version = version + 1 WHERE id = ANY (ARRAY(SELECT md5((:r::bigint * 100 + g)::text)::uuid FROM generate_series(1, 100) g)) AND version = 1;
UPDATE executions SET current_state = 'INVENTORY_RESERVED' WHERE order_id = ANY (ARRAY(SELECT md5((:r::bigint * 100 + g)::text)::uuid FROM generate_series(1, 100) g)) AND machine = 'OrderProcess' AND return_id IS NULL;
INSERT INTO execution_history (execution_id, seq, step, from_state, to_state, event_id, topic, partition, "offset", detail)
  SELECT md5('p' || (:r::bigint * 100 + g))::uuid, 2, 'UpdateInventory', 'CREATED', 'INVENTORY_RESERVED', 'pb-s1-' || (:r::bigint * 100 + g), 'order.status', 0, 0, '{}'::jsonb FROM generate_series(1, 100) g;
INSERT INTO outbox (id, topic, key, payload) SELECT gen_random_uuid(), 'order.status', 'k'::bytea, '{"status":"INVENTORY_RESERVED"}'::bytea FROM generate_series(1, 100) g;
INSERT INTO inbox (consumer, ce_id, ce_type, topic, partition, "offset")
  SELECT 'pgbench-status', 'pb-s1-' || (:r::bigint * 100 + g), 'order.status.changed', 'order.status', 0, 0 FROM generate_series(1, 100) g;
COMMIT;
-- OrderCompleted
BEGIN;
SELECT ce_id FROM inbox WHERE consumer = 'pgbench-status' AND ce_id = ANY (ARRAY(SELECT 'pb-s2-' || (:r::bigint * 100 + g) FROM generate_series(1, 100) g));
SELECT id, status, version FROM orders WHERE id = ANY (ARRAY(SELECT md5((:r::bigint * 100 + g)::text)::uuid FROM generate_series(1, 100) g)) ORDER BY id FOR UPDATE;
UPDATE orders SET status = 'CONFIRMED', version = version + 1, confirmed_at = now() WHERE id = ANY (ARRAY(SELECT md5((:r::bigint * 100 + g)::text)::uuid FROM generate_series(1, 100) g)) AND version = 2;
INSERT INTO deadlines (order_id, kind, due_at) SELECT md5((:r::bigint * 100 + g)::text)::uuid, 'PAYMENT', now() + interval '30 minutes' FROM generate_series(1, 100) g;
UPDATE executions SET current_state = 'CONFIRMED', status = 'SUCCEEDED', stopped_at = now() WHERE order_id = ANY (ARRAY(SELECT md5((:r::bigint * 100 + g)::text)::uuid FROM generate_series(1, 100) g)) AND machine = 'OrderProcess' AND return_id IS NULL;
INSERT INTO executions (id, machine, order_id, status, current_state) SELECT md5('u' || (:r::bigint * 100 + g))::uuid, 'OrderUpdate', md5((:r::bigint * 100 + g)::text)::uuid, 'RUNNING', 'CONFIRMED' FROM generate_series(1, 100) g;
INSERT INTO execution_history (execution_id, seq, step, from_state, to_state, event_id, topic, partition, "offset", detail)
  SELECT md5('p' || (:r::bigint * 100 + g))::uuid, 3, 'OrderCompleted', 'INVENTORY_RESERVED', 'CONFIRMED', 'pb-s2-' || (:r::bigint * 100 + g), 'order.status', 0, 0, '{}'::jsonb FROM generate_series(1, 100) g
  UNION ALL
  SELECT md5('u' || (:r::bigint * 100 + g))::uuid, 1, 'Start', 'INVENTORY_RESERVED', 'CONFIRMED', 'pb-s2-' || (:r::bigint * 100 + g), 'order.status', 0, 0, '{}'::jsonb FROM generate_series(1, 100) g;
INSERT INTO outbox (id, topic, key, payload) SELECT gen_random_uuid(), 'order.status', 'k'::bytea, '{"status":"CONFIRMED"}'::bytea FROM generate_series(1, 100) g;
INSERT INTO inbox (consumer, ce_id, ce_type, topic, partition, "offset")
  SELECT 'pgbench-status', 'pb-s2-' || (:r::bigint * 100 + g), 'order.status.changed', 'order.status', 0, 0 FROM generate_series(1, 100) g;
COMMIT;
