-- Every model version of the stack's model group in creation order, with its metrics (one row
-- per metric), the champion's value it was judged against, its approval status, when it was
-- promoted and the retrain decision, and how each metric moved from the previous version.
-- Shared SQL (any contract): {model_versions} is the table `driftline lake export` writes.
SELECT
    event_date,
    created,
    model_group,
    version,
    status,
    promoted_at,
    decision,
    metric,
    value,
    champion_value,
    value - lag(value) OVER (PARTITION BY model_group, metric ORDER BY version) AS change_from_previous
FROM {model_versions}
ORDER BY created, version, metric
