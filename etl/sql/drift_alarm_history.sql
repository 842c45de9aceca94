-- Drift metrics per minute (CloudWatch, exported by `driftline lake export`) with the state of the
-- alarm watching each metric at that minute: the last transition at or before it is the one in
-- force (no alarm state before the first recorded transition). Feature-level metrics carry their
-- feature; the alarms watch the stream-level ones (feature = '').
-- Shared SQL (any contract): {drift_metrics} and {alarm_transitions} are the exported tables.
WITH transitions AS (
    SELECT
        alarm_name,
        namespace,
        metric,
        previous_state,
        state,
        reason,
        transition_time,
        lead(transition_time) OVER (PARTITION BY alarm_name ORDER BY transition_time) AS until_time
    FROM {alarm_transitions}
)
SELECT
    m.event_date,
    m.metric_time,
    m.metric,
    m.feature,
    m.value,
    t.alarm_name,
    t.state AS alarm_state,
    t.previous_state AS alarm_previous_state,
    t.transition_time AS alarm_state_since,
    t.reason AS alarm_reason
FROM {drift_metrics} AS m
LEFT JOIN transitions AS t
    ON t.namespace = m.namespace
    AND t.metric = m.metric
    AND m.feature = ''
    AND t.transition_time <= m.metric_time
    AND (t.until_time IS NULL OR m.metric_time < t.until_time)
ORDER BY m.metric_time, m.metric, m.feature, t.alarm_name
