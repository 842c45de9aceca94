-- Athena only: the view readers use: the raw Glue table as of the committed compaction manifests
-- (the Glue table over them). A compacted-* object is visible only once a committed manifest names it;
-- any other object is visible unless a committed manifest supersedes it (docs/analytics.md). DuckDB
-- applies the same rule when it lists the objects (etl/compaction.py).
CREATE OR REPLACE VIEW {view} AS
WITH committed AS (
    SELECT objects, supersedes FROM {compactions} WHERE state = 'committed'
),
shown AS (
    SELECT concat('s3://{bucket}/', k) AS path
    FROM committed CROSS JOIN UNNEST(transform(objects, o -> o.key)) AS u (k)
),
hidden AS (
    SELECT concat('s3://{bucket}/', k) AS path
    FROM committed CROSS JOIN UNNEST(supersedes) AS u (k)
)
SELECT t.*
FROM {raw_table} AS t
WHERE IF(
    strpos(element_at(split("$path", '/'), -1), 'compacted-') = 1,
    "$path" IN (SELECT path FROM shown),
    "$path" NOT IN (SELECT path FROM hidden)
)
