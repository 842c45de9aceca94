-- Rows per lake partition (event date, hour): how much arrived, from how many shards, and when.
-- Shared SQL: runs unchanged on Athena (Glue table {table}) and on DuckDB (`driftline lake query`).
SELECT
    event_date,
    event_hour,
    count(*) AS row_count,
    count(DISTINCT shard_id) AS shards,
    min(event_time) AS first_event_time,
    max(event_time) AS last_event_time,
    max(ingest_time) AS last_ingest_time
FROM {table}
GROUP BY event_date, event_hour
ORDER BY event_date, event_hour
