"""Package driftline for AWS: the retrain Lambda's zip and the consumer fleet's app bundle.

Both artifacts are built from the source tree, offline and byte-for-byte reproducible (sorted
entries, fixed timestamps and modes), and named by their content hash, so a redeploy uploads only
what changed and CloudFormation sees a new key exactly when the code changed.

* Lambda zip: the ``retrain`` and ``etl`` packages (code + data files). Third-party libraries come
  from the runtime (boto3) and from layers (``RetrainLayerArns``, e.g. the AWS SDK for pandas
  layer); the handler trains on SageMaker, so scikit-learn is not needed in the Lambda.
* App bundle: ``driftline-<version>-py3-none-any.whl`` built here (pip/``python -m build`` would
  need setuptools >= 68 and network access for build isolation), plus ``requirements.lock``; the
  instance installs the lock with ``--require-hashes``, then the wheel with ``--no-deps``.

>>> build_lambda_zip(Path("."), Path("/tmp/out")).name  # doctest: +SKIP
'retrain-lambda-3f2a9c1b7e4d.zip'
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from etl.exceptions import StackError

ROOT = Path(__file__).resolve().parents[1]
APP_PACKAGES = ("consumers", "etl", "retrain", "infra")
LAMBDA_PACKAGES = ("retrain", "etl")
DATA_SUFFIXES = (".py", ".toml", ".json", ".yaml", ".sql", ".sha256", ".txt")
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


def package_files(root: Path, packages: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(archive name, file) for every code and data file of ``packages``, sorted."""
    out: list[tuple[str, Path]] = []
    for pkg in packages:
        base = root / pkg
        if not (base / "__init__.py").is_file():
            raise StackError(f"{base} is not a Python package (no __init__.py); run from the repo")
        for path in base.rglob("*"):
            if path.is_file() and path.suffix in DATA_SUFFIXES and "__pycache__" not in path.parts:
                out.append((path.relative_to(root).as_posix(), path))
    return sorted(out)


def _zip_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def _write(out_dir: Path, stem: str, suffix: str, data: bytes) -> Artifact:
    digest = hashlib.sha256(data).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}-{digest[:12]}{suffix}"
    path.write_bytes(data)
    return Artifact(path, digest)


def build_lambda_zip(root: Path = ROOT, out_dir: Path | None = None) -> Artifact:
    """The retrain Lambda's code: ``retrain/`` and ``etl/`` at the zip's top level."""
    entries = [(name, path.read_bytes()) for name, path in package_files(root, LAMBDA_PACKAGES)]
    return _write(out_dir or root / "dist", "retrain-lambda", ".zip", _zip_bytes(entries))


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(root: Path = ROOT) -> tuple[str, bytes]:
    """A pure-Python wheel of driftline from ``pyproject.toml``: (file name, bytes)."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    dist_info = f"{name}-{version}.dist-info"
    meta = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {project.get('description', '')}",
        f"Requires-Python: {project.get('requires-python', '>=3.11')}",
    ]
    meta += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    for extra, deps in sorted(project.get("optional-dependencies", {}).items()):
        meta.append(f"Provides-Extra: {extra}")
        meta += [f'Requires-Dist: {dep} ; extra == "{extra}"' for dep in deps]
    scripts = project.get("scripts", {})
    entries: list[tuple[str, bytes]] = [
        (n, p.read_bytes()) for n, p in package_files(root, APP_PACKAGES)
    ]
    entries += [
        (f"{dist_info}/METADATA", ("\n".join(meta) + "\n").encode()),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: driftline.infra.lambda_pkg\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        ),
        (
            f"{dist_info}/entry_points.txt",
            ("[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())).encode(),
        ),
    ]
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in sorted(entries))
    record += f"{dist_info}/RECORD,,\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    return f"{name}-{version}-py3-none-any.whl", _zip_bytes(entries)


def build_app_bundle(root: Path = ROOT, out_dir: Path | None = None) -> Artifact:
    """``app-<hash>.tar.gz``: the driftline wheel and ``requirements.lock``, for the fleet."""
    lock = root / "requirements.lock"
    if not lock.is_file():
        raise StackError(f"{lock} is missing; run `make lock`")
    wheel_name, wheel = build_wheel(root)
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for member, data in sorted([(wheel_name, wheel), ("requirements.lock", lock.read_bytes())]):
            info = tarfile.TarInfo(member)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return _write(out_dir or root / "dist", "app", ".tar.gz", buf.getvalue())
