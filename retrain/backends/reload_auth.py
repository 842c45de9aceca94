"""Who may make the local model server load a model, and from where.

Loading a model unpickles it, which runs its code, so the server's ``POST /admin/reload`` (and its
pointer file) must not be a way for another local process or a web page to run code as the
server's user. The server writes a random token to ``model_server.token`` in its state folder with
mode 0600 at each start; a reload must carry it (``Authorization: Bearer <token>``), and the model
directory must lie under the model cache after symlinks are resolved.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from etl.exceptions import RetrainError

#: The reload token's file in the server's state folder (mode 0600).
TOKEN_FILE = "model_server.token"


class ReloadRefusedError(RetrainError):
    """A reload target outside the model cache, or not a directory."""


def within(root: Path, target: str) -> Path:
    """``target`` resolved, if it is a directory under ``root`` (symlinks resolved first)."""
    path = Path(target).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ReloadRefusedError(f"model_dir {target!r} is not under the model cache {str(root)!r}")
    if not path.is_dir():
        raise ReloadRefusedError(f"model_dir {target!r} is not a directory")
    return path


def write_token(path: Path) -> str:
    """A new random token in ``path``, created with mode 0600 (never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    tmp.replace(path)
    return token


def read_token(path: Path) -> str:
    """The token in ``path``; a clear error when it is missing or others may read it."""
    try:
        mode = path.stat().st_mode & 0o777
        token = path.read_text().strip()
    except OSError as exc:
        raise RetrainError(
            f"the model server's reload token {str(path)!r} cannot be read ({exc.strerror});"
            " is the server running from this state folder?"
        ) from None
    if mode & 0o077:
        raise RetrainError(
            f"the reload token {str(path)!r} has mode {mode:o}; expected 600 (chmod 600 it)"
        )
    return token
