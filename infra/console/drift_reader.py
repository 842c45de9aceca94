"""The drift page's data: per-feature metric series, the alarm's threshold and transitions, the
current baseline and the latest window's histogram.

* series: ``cloudwatch:GetMetricData`` of the consumers' per-feature metrics (DriftFeatureScore,
  PSI, JSDistance, KSStatistic; dimensions Stream, Feature) and the summary DriftScore, statistic
  ``Maximum`` (each shard publishes its own window under the same metric: the worst shard is drawn);
* threshold: ``cloudwatch:DescribeAlarms`` of the drift alarm;
* transitions: :func:`alarm_history` (``cloudwatch:DescribeAlarmHistory``; on the emulator,
  which keeps none, the local alarm evaluator's record);
* baseline: the ``CURRENT.json`` pointer and the profile it names (``s3:GetObject``);
* latest window: the newest lake object (``s3:GetObject``), binned by the consumer's own
  :class:`etl.drift.DriftWindow` against that baseline.
"""

from __future__ import annotations

import functools
import io
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from etl.drift import DriftWindow
from etl.profile import NumericProfile, Profile, load_baseline, read_pointer
from infra.console.alarms_reader import Transition, alarm_history, describe_drift_alarm
from infra.console.context import Console, guard
from infra.console.lake_reader import list_prefix

FEATURE_METRICS = (
    ("DriftFeatureScore", "score"),
    ("PSI", "PSI"),
    ("JSDistance", "JS distance"),
    ("KSStatistic", "KS"),
)
HOURS = (1, 3, 6, 12, 24)
#: Points per series at most; the period grows with the range (a multiple of 60 s).
MAX_POINTS = 480


def period_for(hours: int, window_s: float) -> int:
    """The GetMetricData period: the drift window (>= 60 s), coarser for long ranges."""
    base = max(60, round(window_s / 60.0) * 60)
    need = hours * 3600 / MAX_POINTS
    return max(base, int(-(-need // 60)) * 60)


@dataclass
class Series:
    """One chart: shared timestamps (epoch s) and named value lists (None = no data)."""

    title: str
    times: list[int]
    lines: dict[str, list[float | None]]

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "x": self.times, "series": self.lines}


def _query(
    qid: str, ns: str, metric: str, dims: list[dict[str, str]], period: int
) -> dict[str, Any]:
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {"Namespace": ns, "MetricName": metric, "Dimensions": dims},
            "Period": period,
            "Stat": "Maximum",
        },
        "ReturnData": True,
    }


def metric_series(console: Console, hours: int, features: list[str]) -> tuple[Series, list[Series]]:
    """DriftScore, then one chart per feature with its calibrated score (1 = the line set at
    baseline build for the target false-alarm rate), PSI, JS and KS on the same time axis."""
    s = console.settings
    stream = s.require("stream_name")
    period = period_for(hours, s.drift_window_s)
    end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(hours=hours)
    sdim = {"Name": "Stream", "Value": stream}
    queries = [_query("score", s.metrics_namespace, "DriftScore", [sdim], period)]
    for i, name in enumerate(features):
        dims = [sdim, {"Name": "Feature", "Value": name}]
        for j, (metric, _) in enumerate(FEATURE_METRICS):
            queries.append(_query(f"f{i}m{j}", s.metrics_namespace, metric, dims, period))
    values = _fetch_incremental(console, queries, period, start, end)
    t0 = int(start.timestamp())
    times = list(range(t0 - t0 % period, int(end.timestamp()) + 1, period))

    def line(qid: str) -> list[float | None]:
        got = values.get(qid, {})
        return [_round(got.get(t)) for t in times]

    score = Series(
        "drift score (largest calibrated feature score; 1 = the line)",
        times,
        {"DriftScore": line("score")},
    )
    charts = [
        Series(
            name,
            times,
            {label: line(f"f{i}m{j}") for j, (_, label) in enumerate(FEATURE_METRICS)},
        )
        for i, name in enumerate(features)
    ]
    return score, charts


def _fetch_incremental(
    console: Console, queries: list[dict[str, Any]], period: int, start: datetime, end: datetime
) -> dict[str, dict[int, float]]:
    """GetMetricData for ``[start, end)``, asking CloudWatch only for what the console has not
    seen yet: datapoints of periods older than three periods before the last fetch are kept
    (published windows do not change afterwards), newer ones are read again."""
    cache = console.bucket_cache("metrics")
    ids = ",".join(q["Id"] for q in queries)
    key = f"{period}|{console.settings.require('stream_name')}|{ids}"
    entry = cache.get(key)
    if entry is None or entry["start"] > start:
        entry = {"start": start, "until": start, "values": {}}
    fetch_from = max(start, entry["until"] - timedelta(seconds=3 * period))
    cw = console.clients.client("cloudwatch")
    fresh: dict[str, dict[int, float]] = {}

    def fetch(a: datetime, b: datetime) -> None:
        kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": a, "EndTime": b}
        while True:
            resp = cw.get_metric_data(**kwargs)
            for r in resp.get("MetricDataResults", []):
                got = fresh.setdefault(r["Id"], {})
                for t, v in zip(r.get("Timestamps", []), r.get("Values", []), strict=False):
                    got[int(t.timestamp())] = float(v)
            if not resp.get("NextToken"):
                return
            kwargs["NextToken"] = resp["NextToken"]

    for a, b in _chunks(fetch_from, end, period, console.emulated):
        guard("CloudWatch", "cloudwatch:GetMetricData", functools.partial(fetch, a, b))
    cut, first = int(fetch_from.timestamp()), int(start.timestamp())
    merged: dict[str, dict[int, float]] = {}
    for q in queries:
        old = {t: v for t, v in entry["values"].get(q["Id"], {}).items() if first <= t < cut}
        merged[q["Id"]] = {**old, **fresh.get(q["Id"], {})}
    cache[key] = {"start": start, "until": end, "values": merged}
    return merged


def _chunks(
    start: datetime, end: datetime, period: int, emulated: bool
) -> list[tuple[datetime, datetime]]:
    """One range on AWS. The emulator's GetMetricData scans every datapoint of the range once
    per period (quadratic in the range), so there the range is read an hour-multiple at a time."""
    if not emulated:
        return [(start, end)]
    step = timedelta(seconds=period * 30)
    out, a = [], start
    while a < end:
        out.append((a, min(a + step, end)))
        a += step
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else float(f"{v:.4g}")


@dataclass
class AlarmLine:
    name: str
    state: str
    threshold: float | None
    metric: str
    transitions: list[Transition]


def drift_alarm_line(console: Console, since: datetime) -> AlarmLine | None:
    found = describe_drift_alarm(console)
    if found is None:
        return None
    name, a = found
    history = [t for t in alarm_history(console, name, limit=200) if t.time >= since]
    return AlarmLine(
        name, str(a.get("StateValue")), a.get("Threshold"), str(a.get("MetricName")), history
    )


@dataclass
class Histogram:
    feature: str
    labels: list[str]
    baseline: list[float]
    window: list[float] | None


@dataclass
class BaselineView:
    version: str
    created_at: str
    rows: int
    window_start: str | None
    window_end: str | None
    histograms: list[Histogram]
    window_key: str | None
    window_rows: int


def baseline_view(console: Console) -> BaselineView | None:
    s = console.settings
    s3 = console.clients.client("s3")
    bucket = s.require("lake_bucket")
    table = console.contract.name
    cache = console.bucket_cache("baselines")

    def load() -> Profile | None:
        pointer = read_pointer(s3, bucket, s.baseline_prefix, table)
        if pointer is None:
            return None
        if pointer.uri not in cache:
            cache[pointer.uri] = load_baseline(pointer.uri, s3_client=s3)
        got: Profile = cache[pointer.uri]
        return got

    profile = guard("S3", f"s3:GetObject s3://{bucket}/{s.baseline_prefix}/{table}/", load)
    if profile is None:
        return None
    window, key = _latest_window(console, profile)
    hists = [_histogram(name, fp, window) for name, fp in profile.features.items()]
    return BaselineView(
        profile.version,
        profile.created_at,
        profile.window.rows,
        profile.window.start,
        profile.window.end,
        hists,
        key,
        window.rows if window is not None else 0,
    )


def _latest_window(console: Console, profile: Profile) -> tuple[DriftWindow | None, str | None]:
    import pyarrow.parquet as pq

    s = console.settings
    listed = [
        o
        for o in list_prefix(console, f"{s.lake_prefix}/{console.contract.name}/")
        if o.key.endswith(".parquet")
    ]
    if not listed:
        return None, None
    newest = max(listed, key=lambda o: (o.modified, o.key))
    cache = console.bucket_cache("windows")
    hit = cache.get("latest")
    if hit is not None and hit[0] == (newest.key, newest.etag, profile.version):
        return hit[1], newest.key
    s3 = console.clients.client("s3")
    bucket = s.require("lake_bucket")
    body = guard(
        "S3",
        f"s3:GetObject s3://{bucket}/{newest.key}",
        lambda: s3.get_object(Bucket=bucket, Key=newest.key)["Body"].read(),  # noqa: PLW0108
    )
    window = DriftWindow(profile, [f.name for f in console.contract.features])
    window.update(pq.read_table(io.BytesIO(body)))
    cache["latest"] = ((newest.key, newest.etag, profile.version), window)
    return window, newest.key


def _shares(counts: Any) -> list[float]:
    total = float(sum(counts))
    return [round(float(c) / total, 4) if total else 0.0 for c in counts]


def _histogram(name: str, fp: Any, window: DriftWindow | None) -> Histogram:
    if isinstance(fp, NumericProfile):
        edges = [f"{e:.4g}" for e in fp.edges]
        labels = [f"< {edges[0]}"] if edges else ["all"]
        labels += [f"{a}–{b}" for a, b in itertools.pairwise(edges)]
        labels += [f"≥ {edges[-1]}"] if edges else []
    else:
        labels = [*fp.categories, "other"]
    win = None
    if window is not None and name in window.features and name not in window.missing_in_baseline:
        win = _shares(window.counts(name))
    return Histogram(name, labels, _shares(fp.counts), win)
