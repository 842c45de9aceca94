-- Athena views over the lake's Glue table {table}: one per shared query (Athena only; DuckDB runs
-- the query files directly). Run each statement separately (Athena takes one per execution), with
-- the Glue database as the query execution context.
CREATE OR REPLACE VIEW {table}_volume_per_partition AS
SELECT event_date, event_hour, count(*) AS row_count, count(DISTINCT shard_id) AS shards,
       min(event_time) AS first_event_time, max(event_time) AS last_event_time,
       max(ingest_time) AS last_ingest_time
FROM {table}
GROUP BY event_date, event_hour;

CREATE OR REPLACE VIEW {table}_feature_summary_daily AS
SELECT event_date, count(*) AS row_count, avg(amount) AS amount_mean,
       stddev_samp(amount) AS amount_stddev, min(amount) AS amount_min, max(amount) AS amount_max,
       avg(CAST(hour AS DOUBLE)) AS hour_mean, avg(distance_from_home_km) AS distance_mean,
       avg(CASE WHEN distance_from_home_km IS NULL THEN 1.0 ELSE 0.0 END) AS distance_null_share,
       count(DISTINCT merchant_category) AS merchant_categories, count(DISTINCT device) AS devices,
       count(DISTINCT country) AS countries, avg(CASE WHEN is_fraud THEN 1.0 ELSE 0.0 END) AS fraud_rate
FROM {table}
GROUP BY event_date;

CREATE OR REPLACE VIEW {table}_dead_letter_reasons AS
SELECT event_date, reason, count(*) AS dead_letters, count(DISTINCT shard_id) AS shards,
       min(dead_at) AS first_dead_at, max(dead_at) AS last_dead_at
FROM {dead_letters}
GROUP BY event_date, reason;
