"""The on-stream drift window inside the record processor (a ``BatchObserver``).

``consumers.app`` plugs it into the :class:`~consumers.processor.ShardProcessor`: every decoded
batch of valid rows goes into this shard's :class:`~etl.drift.DriftWindow`; at each ``flush(now)``
the :class:`~etl.drift.WindowPolicy` decides whether the window closes (≥ ``drift_window_s`` of
processing time AND ≥ ``drift_min_rows`` rows, otherwise it extends). A closing window publishes its
statistics through :class:`~consumers.metrics.MetricsPublisher`, then the baseline pointer is
re-read, so a newly published baseline takes effect at the next window without a restart (and its
CUSUMs start from zero: evidence against the old baseline says nothing about the new one).
The window (its counts and CUSUMs) pickles, so its state can be handed over with a lease.

Nothing here may fail the data path: every error is logged and counted, never raised.
Without a baseline yet, windows still publish ``WindowRows`` and dead-letter metrics (no drift
score: the alarm treats that period as missing, i.e. not breaching).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

from consumers.metrics import MetricsPublisher
from etl.contract import Contract
from etl.drift import DriftResult, DriftWindow, WindowPolicy
from etl.profile import CurrentBaseline, Profile

log = logging.getLogger("driftline.drift")


class DriftObserver:
    """Feeds a drift window per shard and publishes it when the window policy closes it."""

    def __init__(
        self,
        baseline: CurrentBaseline,
        publisher: MetricsPublisher,
        policy: WindowPolicy,
        features: Iterable[str],
        *,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.baseline = baseline
        self.publisher = publisher
        self.policy = policy
        self.features = tuple(features)
        self._wall = wall_clock
        self.window: DriftWindow | None = None
        self.opened_at: float | None = None
        self.rows = 0
        self.dead_letters = 0
        self.errors = 0
        self.closed: list[DriftResult] = []
        self._refresh()

    def _refresh(self) -> None:
        try:
            profile = self.baseline.refresh()
        except Exception as exc:  # a bad or unreadable baseline must not stop the consumer
            self.errors += 1
            log.error("drift baseline not (re)loaded: %s: %s", type(exc).__name__, exc)
            return
        if profile is not None and (self.window is None or self.window.profile is not profile):
            self._start_window(profile)

    def _start_window(self, profile: Profile) -> None:
        self.window = DriftWindow(profile, self.features)

    def observe(self, rows: pa.Table, dead_letters: int, now: float) -> None:
        try:
            if self.opened_at is None:
                self.opened_at = now
            if self.window is not None and rows.num_rows:
                self.window.update(rows)
            self.rows += rows.num_rows
            self.dead_letters += dead_letters
        except Exception as exc:
            self.errors += 1
            log.error("drift window update failed: %s: %s", type(exc).__name__, exc)

    def flush(self, now: float) -> None:
        """Close and publish the window if the policy says so (never raises)."""
        try:
            if self.opened_at is None or not self.policy.should_close(
                now, self.opened_at, self.rows
            ):
                return
            self._close()
        except Exception as exc:
            self.errors += 1
            log.error("drift window close failed: %s: %s", type(exc).__name__, exc)

    def _close(self) -> None:
        if self.window is not None:
            result = self.window.close(self.policy.min_rows)
        else:
            result = DriftResult(rows=self.rows, features=())
        self.publisher.publish(result, timestamp=self._wall(), dead_letters=self.dead_letters)
        self.closed.append(result)
        del self.closed[:-16]  # keep the last few for debugging only
        log.info(
            "drift window closed: rows=%d dead_letters=%d drift_score=%s baseline=%s",
            result.rows,
            self.dead_letters,
            result.drift_score,
            result.baseline_version or "-",
        )
        self.opened_at, self.rows, self.dead_letters = None, 0, 0
        self._refresh()


def make_drift_observer(settings: Any, contract: Contract, clients: Any) -> DriftObserver | None:
    """The processor's drift observer from the process settings (None when not configured)."""
    bucket, stream = settings.lake_bucket, settings.stream_name
    if not bucket or not stream:
        log.warning("drift monitoring off: lake_bucket and stream_name must both be set")
        return None
    publisher = MetricsPublisher(
        clients.client("cloudwatch"),
        settings.metrics_namespace,
        stream_name=stream,
        high_resolution=settings.metrics_high_resolution,
    )
    baseline = CurrentBaseline(clients.client("s3"), bucket, settings.baseline_prefix, contract)
    policy = WindowPolicy(window_s=settings.drift_window_s, min_rows=settings.drift_min_rows)
    return DriftObserver(baseline, publisher, policy, [f.name for f in contract.features])
