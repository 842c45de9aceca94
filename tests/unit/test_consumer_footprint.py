"""The record processor's import footprint, and the χ² survival function that keeps it small."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from etl.drift import chi2_sf


def test_the_record_processor_imports_neither_pandas_nor_awswrangler_nor_scipy_stats() -> None:
    # GIVEN a fresh interpreter WHEN it imports everything the processor child runs
    code = (
        "import sys, json; import consumers.app, consumers.drift_observer, consumers.metrics;"
        " import amazon_kclpy.kcl;"
        " print(json.dumps(sorted(m for m in ('pandas', 'awswrangler', 'scipy.stats', 'sklearn',"
        " 'sagemaker') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # THEN none of the heavy libraries is loaded (they cost ~120 MiB of the child's RSS)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 10, 19, 50])
def test_chi2_sf_matches_scipy(dof: int) -> None:
    xs = np.concatenate([np.linspace(0.0, 5.0, 41), np.linspace(5.0, 300.0, 120)])
    ours = np.array([chi2_sf(float(x), dof) for x in xs])
    oracle = stats.chi2.sf(xs, dof)
    mask = oracle > 1e-250
    np.testing.assert_allclose(ours[mask], oracle[mask], rtol=1e-12, atol=0)
