"""Drift baselines: a versioned, mergeable per-feature profile of a dataset.

A :class:`Profile` is what the on-stream drift statistics compare against. It is built from the data
a model was trained on (``driftline baseline build``) and stored as JSON next to the lake:

* numeric feature → interior bin edges that follow the data (:mod:`etl.binning`: one bin per value
  for low-cardinality features and point masses, quantile bins for the rest, default 10; the outer
  bins are open-ended, ``(-inf, e0)`` and ``[e_last, +inf)``), the count in each bin, nulls
  (non-finite values count as nulls and are also counted apart), min, max;
* categorical feature (string, bool) → the top-K values (default 20) with their counts, plus one
  ``other`` count for every value outside the top K.

Bins are half-open on the right: a value equal to an edge falls into the bin above it
(``numpy.searchsorted(edges, x, side="right")``). Profiles built with the same edges and categories
merge exactly (counts add), so the profiles of two halves merge into the profile of the whole:

>>> import numpy as np
>>> from etl.contract import parse_contract
>>> c = parse_contract({"name": "readings", "partition_key": "site", "fields": [
...     {"name": "reading_id", "type": "string", "role": "id"},
...     {"name": "taken_at", "type": "timestamp", "role": "event_time"},
...     {"name": "site", "type": "string", "role": "attribute"},
...     {"name": "temperature", "type": "float", "role": "feature"},
...     {"name": "level", "type": "int", "role": "feature"},
...     {"name": "mode", "type": "string", "role": "feature"}]})
>>> rng = np.random.default_rng(0)
>>> data = {"temperature": rng.lognormal(3, 1, 1000), "level": rng.integers(0, 24, 1000),
...         "mode": np.array(["auto"] * 1000)}
>>> whole = build_profile(data, c, created_at="2026-01-01T00:00:00Z")
>>> half = lambda s: {k: v[s] for k, v in data.items()}
>>> a = build_profile(half(slice(0, 500)), c, edges_from=whole)
>>> b = build_profile(half(slice(500, None)), c, edges_from=whole)
>>> merge(a, b).features == whole.features
True

The profile also carries the per-feature thresholds calibrated to a false-alarm rate
(:mod:`etl.calibration`), computed from its own bins at build and merge time.

Storage (I/O at the edge, the S3 client is injected): ``baselines/<table>/<version>.json`` and a
pointer ``baselines/<table>/CURRENT.json`` naming the current one.

The package's modules, by job: :mod:`etl.profile.columns` (reading columns of Arrow, pandas or
mappings of arrays; binned counts), :mod:`etl.profile.model` (the profile and its JSON document),
:mod:`etl.profile.build` (build, merge, calibrate), :mod:`etl.profile.store` (S3 and files, the
current-baseline pointer). Everything is importable from ``etl.profile``.
"""

from __future__ import annotations

from etl.profile.build import ProfileOptions, build_profile, calibrate, merge
from etl.profile.columns import (
    FloatArray,
    IntArray,
    arrow_column,
    as_arrow,
    categorical_counts,
    categorical_values,
    column_names,
    num_rows,
    numeric_counts,
    numeric_values,
    top_categories,
)
from etl.profile.model import (
    DEFAULT_BINS,
    DEFAULT_TOP_K,
    OTHER,
    POINTER_NAME,
    PROFILE_FORMAT,
    READABLE_FORMATS,
    CategoricalProfile,
    DataWindow,
    FeatureProfile,
    NumericProfile,
    Profile,
    check_contract,
    make_version,
)
from etl.profile.store import (
    BaselinePointer,
    CurrentBaseline,
    baseline_key,
    load_baseline,
    load_current_baseline,
    pointer_key,
    read_pointer,
    save_baseline,
    split_s3_uri,
    write_baseline_file,
)

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_TOP_K",
    "OTHER",
    "POINTER_NAME",
    "PROFILE_FORMAT",
    "READABLE_FORMATS",
    "BaselinePointer",
    "CategoricalProfile",
    "CurrentBaseline",
    "DataWindow",
    "FeatureProfile",
    "FloatArray",
    "IntArray",
    "NumericProfile",
    "Profile",
    "ProfileOptions",
    "arrow_column",
    "as_arrow",
    "baseline_key",
    "build_profile",
    "calibrate",
    "categorical_counts",
    "categorical_values",
    "check_contract",
    "column_names",
    "load_baseline",
    "load_current_baseline",
    "make_version",
    "merge",
    "num_rows",
    "numeric_counts",
    "numeric_values",
    "pointer_key",
    "read_pointer",
    "save_baseline",
    "split_s3_uri",
    "top_categories",
    "write_baseline_file",
]
