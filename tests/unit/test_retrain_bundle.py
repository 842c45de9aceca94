"""What the SageMaker containers run is Python-3.9 code that imports only what it ships.

The scikit-learn framework image 1.2-1 runs CPython 3.9 (its Dockerfile pins
``PYTHON_VERSION=3.9``); the training job runs with network isolation, so nothing can be installed
at start. The training bundle (``retrain.fit.SHIPPED`` plus ``train.py``) and the serving program
(``code/inference.py`` in the model artifact) must therefore:

* parse as Python 3.9 and use no 3.10+ library feature (``datetime.UTC``, ``StrEnum``,
  ``tomllib``, ``dataclass(slots=...)``, ``zip(strict=...)``, ``isinstance(x, A | B)``);
* import nothing of ours beyond the bundle;
* train from the bundle alone, in a subprocess with only the bundle on the path for our code.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrain.fit import SHIPPED

REPO = Path(__file__).resolve().parents[2]
#: Names that do not exist before Python 3.10/3.11 (module, attribute).
NEWER_NAMES = {
    ("datetime", "UTC"),
    ("enum", "StrEnum"),
    ("typing", "Self"),
    ("typing", "TypeAlias"),
    ("typing", "ParamSpec"),
    ("itertools", "pairwise"),
}
NEWER_MODULES = {"tomllib"}
#: Modules the container's packages may lack at run time (numpy.typing: numpy >= 1.20); allowed
#: under ``if TYPE_CHECKING:`` only.
RUNTIME_AVOID = {"numpy.typing"}
#: Keyword arguments added in 3.10: dataclass(slots=, kw_only=, match_args=), zip(strict=).
NEWER_KEYWORDS = {"dataclass": {"slots", "kw_only", "match_args"}, "zip": {"strict"}}


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _import_problems(node: ast.Import | ast.ImportFrom, line: str, guarded: bool) -> list[str]:
    names = [a.name for a in node.names]
    found = [
        f"{line}: import {n} outside TYPE_CHECKING"
        for n in names
        if isinstance(node, ast.Import) and not guarded and n in RUNTIME_AVOID
    ]
    if isinstance(node, ast.ImportFrom):
        found += [
            f"{line}: from {node.module} import {n} (3.10+)"
            for n in names
            if (node.module, n) in NEWER_NAMES
        ]
    mods = names if isinstance(node, ast.Import) else [node.module]
    return found + [f"{line}: import {m} (3.11+)" for m in mods if m in NEWER_MODULES]


def _call_problems(node: ast.Call, line: str) -> list[str]:
    fn = _name(node.func)
    found = [
        f"{line}: {fn}({kw.arg}=...) (3.10+)"
        for kw in node.keywords
        if kw.arg in NEWER_KEYWORDS.get(fn, set())
    ]
    union_check = fn in ("isinstance", "issubclass") and len(node.args) == 2
    if union_check and isinstance(node.args[1], ast.BinOp):
        found.append(f"{line}: {fn} with a X | Y union (3.10+)")
    return found


def py39_problems(source: str, where: str) -> list[str]:
    """Every construct of ``source`` that Python 3.9 cannot run (an empty list: none)."""
    try:
        tree = ast.parse(source, feature_version=(3, 9))
    except SyntaxError as exc:
        return [f"{where}:{exc.lineno}: not Python 3.9 syntax: {exc.msg}"]
    found: list[str] = []
    guarded = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _name(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            found += _import_problems(node, line, id(node) in guarded)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in NEWER_NAMES
        ):
            found.append(f"{line}: {node.value.id}.{node.attr} (3.10+)")
        if isinstance(node, ast.Call):
            found += _call_problems(node, line)
    return found


def _our_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    mods: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
            mods |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in mods if m.split(".")[0] in ("etl", "retrain", "infra", "consumers")}


def _module_file(module: str) -> str | None:
    rel = module.replace(".", "/")
    for candidate in (f"{rel}.py", f"{rel}/__init__.py"):
        if (REPO / candidate).is_file():
            return candidate
    return None  # a name imported from a module (``from etl import jsonsafe`` is a module)


def test_the_checker_catches_what_python_3_9_cannot_run() -> None:
    # GIVEN code that ran on 3.11 and failed in the 3.9 container  THEN each is named
    bad = (
        "from datetime import UTC\nimport tomllib\nfrom dataclasses import dataclass\n"
        "@dataclass(frozen=True, slots=True)\nclass A:\n    x: int\n"
        "ok = isinstance(1, int | float)\npairs = list(zip([1], [2], strict=True))\n"
        "match ok:\n    case _:\n        pass\n"
    )
    assert len(py39_problems(bad, "x.py")) == 1  # match: a syntax error ends the parse
    assert len(py39_problems(bad.split("match", maxsplit=1)[0], "x.py")) == 5
    assert py39_problems("import datetime\nz = datetime.timezone.utc\n", "y.py") == []
    assert len(py39_problems("import numpy.typing as npt\n", "z.py")) == 1
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import numpy.typing\n"
    assert py39_problems(guarded, "z.py") == []


@pytest.mark.parametrize("rel", SHIPPED)
def test_every_shipped_module_is_python_3_9(rel: str) -> None:
    assert py39_problems((REPO / rel).read_text(), rel) == []


def test_the_shipped_modules_import_only_each_other() -> None:
    # GIVEN every import of ours in the shipped modules
    outside = {
        f"{rel} imports {mod}"
        for rel in SHIPPED
        for mod in _our_imports(REPO / rel)
        if (found := _module_file(mod)) is not None and found not in SHIPPED
    }
    # THEN each resolves to a shipped module (etl.contract, etl.profile, pyarrow stay home)
    assert outside == set()


def test_the_bundle_alone_trains_and_writes_the_serving_program(tmp_path: Path) -> None:
    from etl.contract import load_contract
    from etl.synthetic import generate_frame
    from retrain.backends.sagemaker import source_bundle
    from retrain.train import baseline_json

    # GIVEN the source bundle and the four channels the handler uploads
    bundle = source_bundle(tmp_path / "bundle")
    contract = load_contract()
    frame = generate_frame(1_500, seed=3, contract=contract)
    channels = {n: tmp_path / "channels" / n for n in ("train", "test", "contract", "baseline")}
    for folder in channels.values():
        folder.mkdir(parents=True)
    frame.iloc[:1_200].to_parquet(channels["train"] / "train.parquet")
    frame.iloc[1_200:].to_parquet(channels["test"] / "test.parquet")
    (channels["contract"] / "contract.json").write_text(json.dumps(contract.to_dict()))
    baseline = baseline_json(frame.iloc[:1_200], contract, source="s3://lake/train/")
    (channels["baseline"] / "baseline.json").write_text(baseline)
    model_dir = tmp_path / "model"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SM_", "PYTHON"))},
        "PYTHONPATH": str(bundle),
        "OMP_NUM_THREADS": "1",
        "SM_MODEL_DIR": str(model_dir),
        **{f"SM_CHANNEL_{n.upper()}": str(p) for n, p in channels.items()},
    }
    # WHEN train.py runs with the bundle first on the path, reporting where our modules came from
    report = tmp_path / "modules.json"
    code = (
        "import atexit, json, runpy, sys\n"
        "def report():\n"
        "    mods = {m: getattr(v, '__file__', None) for m, v in list(sys.modules.items())\n"
        "            if m.split('.')[0] in ('etl', 'retrain', 'infra', 'consumers', 'pyarrow')}\n"
        f"    open({str(report)!r}, 'w').write(json.dumps(mods))\n"
        "atexit.register(report)\n"
        "sys.argv = ['train.py', '--max-iter', '20']\n"
        "runpy.run_path('train.py', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=bundle,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # THEN it trained, and every module of ours it loaded is a file of the bundle
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(report.read_text())
    ours = {m: f for m, f in loaded.items() if not m.startswith("pyarrow")}
    assert ours and all(f is None or f.startswith(str(bundle)) for f in ours.values()), ours
    assert {"etl.contract", "etl.profile"} & set(loaded) == set()
    # AND the model directory holds the model, schema, metrics, the baseline as given and the
    # serving container's program
    assert (model_dir / "baseline.json").read_text() == baseline
    assert (model_dir / "code" / "inference.py").read_bytes() == (
        REPO / "retrain" / "inference.py"
    ).read_bytes()
    schema = json.loads((model_dir / "model.json").read_text())
    assert schema["contract"] == {"name": contract.name, "hash": contract.hash}
    assert schema["baseline_version"] == json.loads(baseline)["version"]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["test"]["rows"] == 300


def test_the_container_entry_refuses_a_job_without_its_channels(tmp_path: Path) -> None:
    from retrain.fit import main

    # GIVEN a job environment without the contract and baseline channels
    env = {"SM_CHANNEL_TRAIN": str(tmp_path), "SM_MODEL_DIR": str(tmp_path / "m")}
    # WHEN the container's entry runs THEN it exits 1 naming the channels (no traceback)
    assert main([], env) == 1
