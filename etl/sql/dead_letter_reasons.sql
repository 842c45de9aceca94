-- Dead letters per day and reason, with the shards they came from.
-- Shared SQL: on Athena {dead_letters} is the Glue table of athena_dead_letters_table.sql; on DuckDB
-- (`driftline lake query`) it is the view over dead-letters/<table>/.
SELECT
    event_date,
    reason,
    count(*) AS dead_letters,
    count(DISTINCT shard_id) AS shards,
    min(dead_at) AS first_dead_at,
    max(dead_at) AS last_dead_at
FROM {dead_letters}
GROUP BY event_date, reason
ORDER BY event_date, dead_letters DESC, reason
