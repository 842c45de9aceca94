"""Who may do what in the embedded PostgreSQL: passwords, roles and the DSNs that use them.

Three roles, each with a generated password (SCRAM-SHA-256) kept in one libpq password file,
``<state>/postgres/pgpass``, mode 0600. DSNs name the file (``passfile=``), never the password, so
a DSN may be printed or stored in ``state.json`` without giving anything away.

* ``postgres`` (superuser): only ``driftline local up`` uses it, to create the two others;
* ``driftline_loader``: owns the ``driftline`` schema and may create schemas; loading runs as it.
  Not a superuser, so ``COPY ... TO PROGRAM``, ``pg_read_file`` and other roles' objects are out
  of its reach;
* ``driftline_reader``: ``warehouse query`` runs as it, in a read-only transaction (and the role's
  own default is read-only): it may read the loader's tables and nothing else.

>>> secrets_ = Secrets.create(Path(".driftline/postgres"))    # doctest: +SKIP
>>> secrets_.dsn(54012, LOADER)                              # doctest: +SKIP
'postgresql://driftline_loader@127.0.0.1:54012/postgres?passfile=/…/pgpass'
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from etl.exceptions import EmulatorError

SUPERUSER = "postgres"
LOADER = "driftline_loader"
READER = "driftline_reader"
SCHEMA = "driftline"
DATABASE = "postgres"
PASSFILE = "pgpass"
ROLES = (SUPERUSER, LOADER, READER)


@dataclass(frozen=True)
class Secrets:
    """The roles' passwords, as stored in the 0600 password file."""

    path: Path
    passwords: dict[str, str]

    @classmethod
    def create(cls, folder: Path) -> Secrets:
        """New random passwords in ``folder/pgpass`` (mode 0600 from the first byte)."""
        folder.mkdir(parents=True, exist_ok=True)
        made = cls(folder / PASSFILE, {r: secrets.token_urlsafe(24) for r in ROLES})
        tmp = made.path.with_name(f".{PASSFILE}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            for role, password in made.passwords.items():
                fh.write(f"127.0.0.1:*:*:{role}:{password}\n")
        tmp.replace(made.path)
        return made

    @classmethod
    def load(cls, folder: Path) -> Secrets | None:
        path = folder / PASSFILE
        if not path.is_file():
            return None
        if path.stat().st_mode & 0o077:
            raise EmulatorError(
                f"{path} may be read by other users (mode {path.stat().st_mode & 0o777:o});"
                f" expected 600: chmod 600 {path}"
            )
        found: dict[str, str] = {}
        for line in path.read_text().splitlines():
            parts = line.split(":", 4)
            if len(parts) == 5:
                found[parts[3]] = parts[4]
        if set(found) != set(ROLES):
            raise EmulatorError(f"{path} lacks a password for one of {list(ROLES)}; remove it")
        return cls(path, found)

    def dsn(self, port: int, role: str) -> str:
        """A DSN for ``role`` that reads the password from the file (never contains it)."""
        return (
            f"postgresql://{role}@127.0.0.1:{port}/{DATABASE}"
            f"?passfile={quote(str(self.path), safe='/')}"
        )


def ensure_roles(admin_dsn: str, secrets_: Secrets) -> None:
    """Create (or reset) the loader and reader roles and their rights; idempotent."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        for role in (LOADER, READER):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(
                    verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
                    " NOREPLICATION NOBYPASSRLS PASSWORD {}"
                ).format(sql.Identifier(role), sql.Literal(secrets_.passwords[role]))
            )
        ident = {
            "db": sql.Identifier(DATABASE),
            "schema": sql.Identifier(SCHEMA),
            "loader": sql.Identifier(LOADER),
            "reader": sql.Identifier(READER),
        }
        for statement in _GRANTS:
            conn.execute(sql.SQL(statement).format(**ident))


_GRANTS = (
    "REVOKE ALL ON DATABASE {db} FROM PUBLIC",
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    "GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {db} TO {loader}",
    "GRANT CONNECT ON DATABASE {db} TO {reader}",
    "CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {loader}",
    "ALTER SCHEMA {schema} OWNER TO {loader}",
    "ALTER ROLE {reader} SET default_transaction_read_only = on",
    "GRANT USAGE ON SCHEMA {schema} TO {reader}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {loader} GRANT USAGE ON SCHEMAS TO {reader}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {loader} GRANT SELECT ON TABLES TO {reader}",
)


def require_passwords(hba: Path) -> bool:
    """Rewrite a ``trust`` pg_hba.conf (a cluster an older driftline made) to SCRAM.

    Returns whether the file changed (the server must then reload its configuration)."""
    text = hba.read_text()
    lines = []
    for line in text.splitlines():
        fields = line.split()
        trusted = fields and not line.lstrip().startswith("#") and fields[-1] == "trust"
        lines.append(line[: line.rstrip().rfind("trust")] + "scram-sha-256" if trusted else line)
    new = "\n".join(lines) + "\n"
    if new == text:
        return False
    hba.write_text(new)
    return True
