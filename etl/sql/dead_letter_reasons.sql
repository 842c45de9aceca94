-- Dead letters per day, hour (of dead_at, UTC) and reason, with the shards they came from.
-- Shared SQL (any contract): {dead_letters} is the table's dead-letter table.
SELECT
    event_date,
    substr(dead_at, 12, 2) AS dead_hour,
    reason,
    count(*) AS dead_letters,
    count(DISTINCT shard_id) AS shards,
    min(dead_at) AS first_dead_at,
    max(dead_at) AS last_dead_at
FROM {dead_letters}
GROUP BY event_date, substr(dead_at, 12, 2), reason
ORDER BY event_date, dead_hour, dead_letters DESC, reason
