"""The store on PostgreSQL: what differs from SQLite, and nothing else.

:class:`PgStore` is :class:`consensus.store.Store` with another connection: the schema, the SQL and
every method are the store's; this module supplies the connection (psycopg 3, imported only when a
DSN is opened: the ``postgres`` extra), the placeholders (``%s`` for ``?``), the dialect
(``DOUBLE PRECISION``, an identity column ``seq`` for insertion order) and the schema version,
kept in the one-row table ``schema_version``. Migrations run under a transaction-level advisory
lock (:data:`LOCK_KEY`), so replicas that open a fresh database together create the schema once.

The connection is in autocommit mode and every write is an explicit transaction, so a decision is
visible to every other connection as soon as :meth:`~consensus.store.Store.record` returns.

A DSN may carry a password (``postgresql://user:secret@host/db`` or ``?password=secret``): it is
removed (:func:`safe_dsn`) from the store's name, from every message and error.

Example:
    >>> safe_dsn("postgresql://app:s3cret@db.internal:5432/consensus?sslmode=require")
    'postgresql://app@db.internal:5432/consensus?sslmode=require'
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn
from urllib.parse import parse_qsl, unquote, urlencode

from consensus.errors import ConfigError
from consensus.redact import MASK, redact
from consensus.store import SCHEMA_VERSION, Cursor, Dialect, Store

if TYPE_CHECKING:
    import psycopg

POSTGRES = Dialect(real="DOUBLE PRECISION", seq="\n    seq BIGINT GENERATED ALWAYS AS IDENTITY,",
                   order="seq", ident="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                   skip_locked=" FOR UPDATE SKIP LOCKED")
LOCK_KEY = 0x636F6E73656E7375
"""The advisory lock (``pg_advisory_xact_lock``, per database) that serialises migrations
(the bytes spell "consensu")."""
EXTRA = "pip install 'consensus-panel[postgres]'"
CONNECT_TIMEOUT_S = 10
"""libpq's ``connect_timeout`` when the DSN names none (libpq's default is to wait forever)."""
_SECRET_PARAMS = frozenset({"password", "sslpassword"})
_HAS_VERSION_TABLE = ("SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() "
                      "AND tablename = 'schema_version'")
_VERSION_TABLE = ("CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), "
                  "version INTEGER NOT NULL)")


def _split(dsn: str) -> tuple[str, str, str, str]:
    """(scheme://, user info, rest of the authority and path, query) of a DSN. The user info
    ends at the last ``@`` before the query, so a password holding ``@`` or ``/`` is all in it."""
    head, sep, tail = dsn.partition("://")
    if not sep:
        return "", "", dsn, ""
    body, _, query = tail.partition("?")
    userinfo, at, rest = body.rpartition("@")
    return head + sep, userinfo if at else "", rest if at else body, query


def safe_dsn(dsn: str) -> str:
    """``dsn`` without its password (in the user info or a ``password=`` parameter).

    Example:
        >>> safe_dsn("postgres://u:p%40ss@h/db?password=x&application_name=svc")
        'postgres://u@h/db?application_name=svc'
    """
    scheme, userinfo, rest, query = _split(dsn)
    user = userinfo.split(":", 1)[0]
    out = f"{scheme}{user}@{rest}" if user else f"{scheme}{rest}"
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
              if k.lower() not in _SECRET_PARAMS]
    return f"{out}?{urlencode(params)}" if params else out


def dsn_passwords(dsn: str) -> list[str]:
    """The passwords ``dsn`` carries, as written and decoded."""
    _, userinfo, _, query = _split(dsn)
    found = [userinfo.split(":", 1)[1]] if ":" in userinfo else []
    found += [v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() in _SECRET_PARAMS]
    return [p for p in dict.fromkeys([*found, *map(unquote, found)]) if p]


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` on one line, with ``secrets`` (and any key-like substring) masked."""
    text = " ".join(text.split())
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
        else:  # a very short password: mask it where it stands alone, not inside every word
            text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", MASK, text)
    return redact(text, secrets)


class PgStore(Store):
    """The store on a PostgreSQL database, shared by every process that opens the same DSN.

    Args:
        dsn: ``postgresql://[user[:password]@]host[:port]/database[?param=value...]``.

    Raises:
        ConfigError: psycopg is not installed, the server cannot be reached or refuses the
            login, or the schema is newer than this release (field ``--store``; the message
            names the DSN without its password).
    """

    dialect: ClassVar[Dialect] = POSTGRES
    conn: psycopg.Connection[Any]

    def __init__(self, dsn: str):
        self.name = safe_dsn(dsn)
        secrets = dsn_passwords(dsn)
        try:
            import psycopg
        except ImportError:
            raise ConfigError(f"cannot open the store {self.name}: PostgreSQL support is not "
                              f"installed ({EXTRA})", field="--store") from None
        try:
            if "connect_timeout" not in dsn:
                dsn = psycopg.conninfo.make_conninfo(dsn, connect_timeout=CONNECT_TIMEOUT_S)
            self.conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            self._cannot_open(exc, secrets)
        try:
            self._migrate()
        except BaseException as exc:
            self.conn.close()
            if isinstance(exc, psycopg.Error):
                self._cannot_open(exc, secrets)
            raise

    def _cannot_open(self, exc: Exception, secrets: Sequence[str]) -> NoReturn:
        raise ConfigError(f"cannot open the store {self.name}: {scrub(str(exc), secrets)}",
                          field="--store") from None

    def _execute(self, sql: str, params: Sequence[Any] | None = ()) -> Cursor:
        return self.conn.execute(sql.replace("?", "%s"), params or None)

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)

    def _transaction(self) -> AbstractContextManager[Any]:
        return self.conn.transaction()

    def _locked(self) -> AbstractContextManager[Any]:
        # Every multi-statement write starts with a guarded UPDATE of the row it is about,
        # which holds that row's lock until the transaction ends: enough under READ COMMITTED.
        return self.conn.transaction()

    @contextmanager
    def _schema_lock(self) -> Iterator[int]:
        version = self._stored_version()
        if version is not None and version >= SCHEMA_VERSION:
            yield version
            return
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            version = self._stored_version()  # another opener may have migrated meanwhile
            if version is None:
                self.conn.execute(_VERSION_TABLE)
            yield version or 0

    def _stored_version(self) -> int | None:
        """The schema version, or None when the version table does not exist yet."""
        # An MVCC read of the catalog, not to_regclass: this backend's catalog cache may still
        # say "absent" after waiting for the lock of an opener that created the table.
        if self.conn.execute(_HAS_VERSION_TABLE).fetchone() is None:
            return None
        row = self.conn.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
        return 0 if row is None else int(row[0])

    def _set_schema_version(self, version: int) -> None:
        self.conn.execute("INSERT INTO schema_version(id, version) VALUES (1, %s) "
                          "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version", (version,))
