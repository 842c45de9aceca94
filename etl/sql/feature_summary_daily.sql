-- Per-feature summaries per event day: location and spread of the numeric features, missing-value
-- share, categorical cardinality, true share of booleans (features and the label). A shift in these
-- day over day is what the on-stream drift alarms on; this is the query to look at afterwards.
-- Shared SQL (any contract): {feature_summary} is generated from the contract's fields.
SELECT
    event_date,
    count(*) AS row_count,
    {feature_summary}
FROM {table}
GROUP BY event_date
ORDER BY event_date
