-- Rows per lake partition (event date, hour) and shard: how much arrived, and when.
-- Shared SQL (any contract): {table} is the lake table, {event_time_column} the contract's
-- event-time column; `driftline lake query --file volume_per_partition [--engine duckdb|athena]`.
SELECT
    event_date,
    event_hour,
    shard_id,
    count(*) AS row_count,
    min({event_time_column}) AS first_event_time,
    max({event_time_column}) AS last_event_time,
    max(ingest_time) AS last_ingest_time
FROM {table}
GROUP BY event_date, event_hour, shard_id
ORDER BY event_date, event_hour, shard_id
