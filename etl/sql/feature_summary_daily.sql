-- Drift-relevant feature summaries per event day (card_transactions contract): location and spread
-- of the numeric features, missing-value share, categorical cardinality and label rate. A shift in
-- these day over day is what the on-stream PSI alarms on; this is the query to look at afterwards.
-- Shared SQL: runs unchanged on Athena (Glue table {table}) and on DuckDB (`driftline lake query`).
SELECT
    event_date,
    count(*) AS row_count,
    avg(amount) AS amount_mean,
    stddev_samp(amount) AS amount_stddev,
    min(amount) AS amount_min,
    max(amount) AS amount_max,
    avg(CAST(hour AS DOUBLE)) AS hour_mean,
    avg(distance_from_home_km) AS distance_mean,
    avg(CASE WHEN distance_from_home_km IS NULL THEN 1.0 ELSE 0.0 END) AS distance_null_share,
    count(DISTINCT merchant_category) AS merchant_categories,
    count(DISTINCT device) AS devices,
    count(DISTINCT country) AS countries,
    avg(CASE WHEN is_fraud THEN 1.0 ELSE 0.0 END) AS fraud_rate
FROM {table}
GROUP BY event_date
ORDER BY event_date
