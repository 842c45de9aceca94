-- Athena only: the Glue table over the dead letters (JSON lines), with partition projection so no
-- partition needs registering. Replace {bucket} and {dead_letter_prefix}; run in the Glue database.
CREATE EXTERNAL TABLE IF NOT EXISTS {dead_letters} (
    reason string,
    detail string,
    payload string,
    payload_base64 string,
    shard_id string,
    sequence_number string,
    partition_key string,
    approximate_arrival_time string,
    dead_at string
)
PARTITIONED BY (event_date string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
LOCATION 's3://{bucket}/{dead_letter_prefix}/{table}/'
TBLPROPERTIES (
    'projection.enabled' = 'true',
    'projection.event_date.type' = 'date',
    'projection.event_date.format' = 'yyyy-MM-dd',
    'projection.event_date.range' = '2020-01-01,NOW',
    'storage.location.template' = 's3://{bucket}/{dead_letter_prefix}/{table}/event_date=${event_date}/'
)
