"""Packaging: reproducible, content-addressed Lambda zip and app bundle (built from a temp tree)."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from etl.exceptions import StackError
from infra.lambda_pkg import build_app_bundle, build_lambda_zip, build_wheel


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for pkg in ("consumers", "etl", "retrain", "infra"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text(f'"""{pkg}"""\n')
    (root / "retrain" / "handler.py").write_text("def handler(event, context):\n    return 1\n")
    (root / "etl" / "contracts").mkdir()
    (root / "etl" / "contracts" / "c.toml").write_text("name = 'c'\n")
    (root / "etl" / "__pycache__").mkdir()
    (root / "etl" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / "infra" / "templates").mkdir()
    (root / "infra" / "templates" / "t.yaml").write_text("Resources: {}\n")
    (root / "pyproject.toml").write_text(
        '[project]\nname = "driftline"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["boto3>=1.35"]\n[project.optional-dependencies]\nlocal = ["moto>=5"]\n'
        '[project.scripts]\ndriftline = "infra.cli:main"\n'
    )
    (root / "requirements.lock").write_text("boto3==1.35.0 --hash=sha256:00\n")
    return root


def test_lambda_zip_is_reproducible_and_holds_retrain_and_etl_only(
    tree: Path, tmp_path: Path
) -> None:
    # GIVEN a source tree  WHEN the Lambda zip is built twice
    a = build_lambda_zip(tree, tmp_path / "a")
    b = build_lambda_zip(tree, tmp_path / "b")
    # THEN both are byte-identical and named by their hash
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.name == f"retrain-lambda-{a.sha256[:12]}.zip"
    assert hashlib.sha256(a.path.read_bytes()).hexdigest() == a.sha256
    # AND hold the code and data of retrain/ and etl/, no bytecode, no other package
    names = zipfile.ZipFile(a.path).namelist()
    assert names == [
        "etl/__init__.py", "etl/contracts/c.toml", "retrain/__init__.py", "retrain/handler.py",
    ]  # fmt: skip


def test_lambda_zip_changes_name_when_code_changes(tree: Path, tmp_path: Path) -> None:
    before = build_lambda_zip(tree, tmp_path)
    (tree / "retrain" / "handler.py").write_text("def handler(event, context):\n    return 2\n")
    after = build_lambda_zip(tree, tmp_path)
    assert before.name != after.name


def test_wheel_metadata_entry_point_and_record(tree: Path) -> None:
    # GIVEN the wheel built from pyproject.toml
    name, data = build_wheel(tree)
    zf = zipfile.ZipFile(io.BytesIO(data))
    # THEN it is named and tagged as a pure-Python wheel with the console script
    assert name == "driftline-0.1.0-py3-none-any.whl"
    meta = zf.read("driftline-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: boto3>=1.35\n" in meta
    assert 'Requires-Dist: moto>=5 ; extra == "local"\n' in meta
    assert zf.read("driftline-0.1.0.dist-info/entry_points.txt") == (
        b"[console_scripts]\ndriftline = infra.cli:main\n"
    )
    assert "infra/templates/t.yaml" in zf.namelist()
    # AND every RECORD line's hash matches the member
    for line in zf.read("driftline-0.1.0.dist-info/RECORD").decode().splitlines():
        member, digest, size = line.split(",")
        if member.endswith("RECORD"):
            continue
        body = zf.read(member)
        expected = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
        assert (digest, int(size)) == (f"sha256={expected}", len(body))


def test_app_bundle_holds_wheel_and_lock(tree: Path, tmp_path: Path) -> None:
    bundle = build_app_bundle(tree, tmp_path)
    with tarfile.open(bundle.path) as tar:
        assert tar.getnames() == ["driftline-0.1.0-py3-none-any.whl", "requirements.lock"]
        assert {m.mtime for m in tar.getmembers()} == {0}
    assert build_app_bundle(tree, tmp_path / "again").sha256 == bundle.sha256


def test_missing_package_or_lock_is_refused(tree: Path, tmp_path: Path) -> None:
    (tree / "requirements.lock").unlink()
    with pytest.raises(StackError, match=r"requirements\.lock is missing"):
        build_app_bundle(tree, tmp_path)
    (tree / "retrain" / "__init__.py").unlink()
    with pytest.raises(StackError, match="is not a Python package"):
        build_lambda_zip(tree, tmp_path)


def test_every_scheduled_lambda_handler_of_the_template_is_in_the_real_zip(tmp_path: Path) -> None:
    import ast

    from infra.stack import TEMPLATE_PATH, load_template

    # GIVEN the Lambda zip built from this repository and the template's functions
    art = build_lambda_zip(out_dir=tmp_path)
    names = set(zipfile.ZipFile(art.path).namelist())
    functions = {
        lid: spec["Properties"]["Handler"]
        for lid, spec in load_template(TEMPLATE_PATH)["Resources"].items()
        if spec["Type"] == "AWS::Lambda::Function"
        and isinstance(spec["Properties"]["Handler"], str)
    }
    assert functions["CaptureIngestFunction"] == "etl.capture_lake.handler"
    # THEN each handler's module is in the zip and defines the function
    for lid, handler in functions.items():
        module, _, func = handler.rpartition(".")
        path = module.replace(".", "/") + ".py"
        assert path in names, (lid, path)
        tree = ast.parse(zipfile.ZipFile(art.path).read(path))
        assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, lid
