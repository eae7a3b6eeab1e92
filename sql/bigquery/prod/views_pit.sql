-- Point-in-time views (BigQuery, prod dataset), over the prod views. Template: placeholders as in
-- raw/fact_events.sql. Point-in-time views: the facts with product_key and user_key resolved to the
-- dimension version valid at the fact's time (valid_from <= t < coalesce(valid_to, +infinity)).
-- Views, not tables: a dimension version that arrives after the fact (a late-arriving
-- dimension) resolves as soon as it is stored, and nothing is lost in between (the key is NULL
-- until then). Same views as duckdb/prod/views_pit.sql. The file sorts after the tables it reads.
CREATE OR REPLACE VIEW `${project}.${prod}.fact_events_pit` AS
SELECT e.*, p.product_key, u.user_key
FROM `${project}.${prod}.fact_events` e
LEFT JOIN `${project}.${prod}.dim_products` p ON p.product_id = e.product_id
    AND p.valid_from <= e.event_timestamp AND (p.valid_to IS NULL OR e.event_timestamp < p.valid_to)
LEFT JOIN `${project}.${prod}.dim_users` u ON u.user_id = e.user_id
    AND u.valid_from <= e.event_timestamp AND (u.valid_to IS NULL OR e.event_timestamp < u.valid_to);

CREATE OR REPLACE VIEW `${project}.${prod}.fact_orders_pit` AS
SELECT o.*, u.user_key
FROM `${project}.${prod}.fact_orders` o
LEFT JOIN `${project}.${prod}.dim_users` u ON u.user_id = o.user_id
    AND u.valid_from <= o.order_timestamp AND (u.valid_to IS NULL OR o.order_timestamp < u.valid_to);

-- Order lines resolve their product at the time of the order they belong to.
CREATE OR REPLACE VIEW `${project}.${prod}.fact_order_items_pit` AS
SELECT i.*, o.order_timestamp, p.product_key
FROM `${project}.${prod}.fact_order_items` i
JOIN `${project}.${prod}.fact_orders` o ON o.order_id = i.order_id
LEFT JOIN `${project}.${prod}.dim_products` p ON p.product_id = i.product_id
    AND p.valid_from <= o.order_timestamp AND (p.valid_to IS NULL OR o.order_timestamp < p.valid_to);
