"""The judgment cache: SQLite in WAL mode, shared by every command and every process.

Key: the judge's fingerprint key + a content hash of what the judge was shown (prompt, the
response shown first, the response shown second, reference) — so the two orders of one pair are
two entries, and the same pair under other candidate ids (another run, another file) is a hit.
Values are the :class:`~judge_rl.types.Judgment` / :class:`~judge_rl.types.Score` JSON; on a hit
the record is re-bound to the caller's candidate ids and its calls are marked ``cached``.

What is cached: successes, and failures whose kind is in ``cache_errors`` (by default ``parse``:
a deterministic judge answers the same unparseable text again). Transport failures (timeouts,
rate limits, server errors) and budget refusals are not, so a re-run retries them.

Versions: the key includes :data:`KEY_VERSIONS` (the verdict parser's and the judging
semantics' versions), and the judge's fingerprint carries the local model's identity and dtype.
Each row also records its *generation key* (the key without the versions): when a version
changes, a row of an older version whose raw output can be re-read is re-parsed by the judge
(``reparse``) instead of asking the model again, so a parser fix reaches cached verdicts and
cached parse failures are retried for free. ``refresh=True`` (``--refresh``) ignores stored rows
and replaces them with fresh answers.

Two processes at once: each claims a chunk of keys just before judging it (a ``claims`` table,
one transaction). A key claimed by a live process is not judged again: the other process moves on
and, at the end, waits for that result and takes it from the cache — so two processes on the same
input split the work. A claim whose owner died (``kill -9``) or expired is taken over. Writes are ``INSERT OR IGNORE`` on the key, so nothing finished is ever duplicated.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import inspect
import itertools
import logging
import os
import queue
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from json.encoder import encode_basestring as _json_text  # what json.dumps uses for text
from pathlib import Path
from typing import Any

from judge_rl._io import canonical_json, content_hash
from judge_rl.judge._common import JUDGING_VERSION, POINTWISE_KINDS, compare_by_scores, report
from judge_rl.judge.budget import Estimate
from judge_rl.judge.parse import PARSER_VERSION
from judge_rl.types import Candidate, Comparison, JudgeFingerprint, Judgment, Score

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS judgments (
    key TEXT PRIMARY KEY,
    judge TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    gen TEXT
);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires REAL NOT NULL
);
"""


def default_cache_path() -> Path:
    """``$JUDGE_RL_JUDGMENT_CACHE`` when set, else ``$JUDGE_RL_CACHE/judgments.sqlite``
    (``~/.cache/judge_rl/judgments.sqlite``)."""
    import os

    from judge_rl.models import cache_root

    explicit = os.environ.get("JUDGE_RL_JUDGMENT_CACHE")
    return Path(explicit) if explicit else cache_root() / "judgments.sqlite"


KEY_VERSIONS = {"parser": PARSER_VERSION, "judging": JUDGING_VERSION}
"""Versions in every cache key: a change of verdict extraction or judging semantics is a miss
(and a re-parse of the stored raw output where the judge can, see :class:`CachedJudge`)."""


def _turns(fp: JudgeFingerprint, *cands: Candidate) -> list[Any]:
    """A multi-turn judge (``turn`` in its params) is shown every turn: they join the key."""
    if not fp.params.get("turn"):
        return []
    return [[c.metadata.get("question_turns"), c.metadata.get("turns")] for c in cands]


def compare_gen_key(fp: JudgeFingerprint, c: Comparison, *, fp_key: str | None = None) -> str:
    """What the model was asked for ``c`` (``a`` shown first), without the versions.
    ``fp_key``: ``fp.key`` when the caller has it (it is a hash of the whole fingerprint)."""
    parts: list[Any] = [
        "compare",
        fp_key or fp.key,
        c.prompt,
        c.a.response,
        c.b.response,
        c.reference,
    ]
    return _key_hash(parts + _turns(fp, c.a, c.b))


def score_gen_key(fp: JudgeFingerprint, cand: Candidate, *, fp_key: str | None = None) -> str:
    """What the model was asked to score ``cand``, without the versions."""
    ref = cand.metadata.get("reference")
    parts: list[Any] = ["score", fp_key or fp.key, cand.prompt, cand.response, ref]
    return _key_hash(parts + _turns(fp, cand))


def compare_key(fp: JudgeFingerprint, c: Comparison, *, gen: str | None = None) -> str:
    """Cache key of ``c`` judged by ``fp`` with ``a`` shown first (``gen``: its
    :func:`compare_gen_key` when the caller has it)."""
    return _versioned(gen or compare_gen_key(fp, c))


def score_key(fp: JudgeFingerprint, cand: Candidate, *, gen: str | None = None) -> str:
    """Cache key of ``cand`` scored by ``fp``."""
    return _versioned(gen or score_gen_key(fp, cand))


def _key_hash(parts: list[Any]) -> str:
    """``content_hash(parts, n=32)`` (the same digest: tested). Parts that are all text or None
    are written as canonical JSON directly, with the C string encoder ``json.dumps`` itself uses:
    ``json.dumps`` with arguments builds a JSON encoder per call, most of a key's cost (two keys
    per comparison: issue 19 item 2)."""
    out = []
    for x in parts:  # one pass, no generators (two per key cost a fifth of it)
        if type(x) is str:
            out.append(_json_text(x))
        elif x is None:
            out.append("null")
        else:
            return content_hash(parts, n=32)
    text = "[" + ",".join(out) + "]"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


_VERSIONS_JSON: tuple[dict[str, Any], str] | None = None


def _versions_json() -> str:
    """:data:`KEY_VERSIONS` as canonical JSON, written once (again if it changes)."""
    global _VERSIONS_JSON
    if _VERSIONS_JSON is None or _VERSIONS_JSON[0] != KEY_VERSIONS:
        _VERSIONS_JSON = (dict(KEY_VERSIONS), canonical_json(KEY_VERSIONS))
    return _VERSIONS_JSON[1]


def _versioned(gen: str) -> str:
    """``content_hash([gen, KEY_VERSIONS], n=32)``, the versions' JSON written once."""
    text = "[" + _json_text(gen) + "," + _versions_json() + "]"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


CHECKPOINT_ROWS = 2_000
"""Rows stored (and claims dropped) between two checkpoints of the WAL (~1 KB a row: about
SQLite's own default of 1,000 pages)."""

STORE_EVERY = 1
"""Finished chunks are stored ``max_in_flight // STORE_EVERY`` at a time (one transaction; and
none waits longer than :data:`STORE_AFTER_S`), so a killed run loses at most the calls in
flight and as many finished ones (at most 50 ms of answers; an interrupted one stores all it
finished). A quarter of the flight at a time (16 of 64) cost the store thread ~20% more CPU:
each transaction writes every page it touched, the table's last pages and the two key
indexes' upper pages in each (issue 19 item 2)."""

ROWS_PER_STATEMENT = 128
"""Rows written by one ``INSERT`` (6 values each: under SQLite's oldest limit of 999)."""

KEYS_PER_STATEMENT = 900
"""Keys of one ``DELETE`` of claims."""

STORE_AFTER_S = 0.05
"""Longest time a finished chunk waits to be stored."""

WRITER_CACHE_KIB = 32_768
"""Page cache of the writer's connection, which lookups read through
(:meth:`JudgmentCache._read`): SQLite's default of 2 MiB holds ~500 of a file's pages, fewer
than the two key indexes of a cache of 50,000 rows, so a run's lookups read the same index
pages again and again. Pages are allocated as they are read."""

_LOOKUP_SQL: dict[tuple[int, int, bool], str] = {}
""":meth:`JudgmentCache.get_with_generations`' statement by numbers of keys and gens, with or
without the search for rows without a generation key."""


def _created(row: tuple[Any, ...]) -> Any:
    return row[3]


MAX_ESTIMATED = 1_000_000
"""Most comparisons whose keys :meth:`CachedJudge.estimate` keeps for the compare that follows."""


def _compare_keys(fp: JudgeFingerprint, comps: Sequence[Comparison]) -> tuple[list[str], list[str]]:
    """``(keys, generation keys)`` of ``comps``, the fingerprint hashed once: what
    :func:`compare_key` and :func:`compare_gen_key` give (tested), written in one loop for the
    comparisons whose texts are all ``str`` (the reference may be None) and the judge not
    multi-turn, without their calls, lists and joins per comparison (~2 us of ~7 a comparison,
    on the event loop of a streamed ``judge-rl label``)."""
    fk = fp.key
    if fp.params.get("turn"):
        gens = [compare_gen_key(fp, c, fp_key=fk) for c in comps]
        return [compare_key(fp, c, gen=g) for c, g in zip(comps, gens, strict=True)], gens
    enc, sha = _json_text, hashlib.sha256
    head = '["compare",' + enc(fk) + ","  # _key_hash's text of the parts, as one string
    tail = '",' + _versions_json() + "]"  # _versioned's: a generation key is hex, no escapes
    keys: list[str] = []
    gens = []
    for c in comps:
        p, a, b, r = c.prompt, c.a.response, c.b.response, c.reference
        if type(p) is str and type(a) is str and type(b) is str:
            if r is None:
                text = head + enc(p) + "," + enc(a) + "," + enc(b) + ",null]"
            elif type(r) is str:
                text = head + enc(p) + "," + enc(a) + "," + enc(b) + "," + enc(r) + "]"
            else:
                text = ""
        else:
            text = ""
        g = (
            sha(text.encode("utf-8")).hexdigest()[:32]
            if text
            else compare_gen_key(fp, c, fp_key=fk)
        )
        gens.append(g)
        keys.append(sha(('["' + g + tail).encode("utf-8")).hexdigest()[:32])
    return keys, gens


def _score_keys(fp: JudgeFingerprint, cands: Sequence[Candidate]) -> tuple[list[str], list[str]]:
    fk = fp.key
    gens = [score_gen_key(fp, c, fp_key=fk) for c in cands]
    return [score_key(fp, c, gen=g) for c, g in zip(cands, gens, strict=True)], gens


class JudgmentCache:
    """A SQLite (WAL) store of finished judgments and scores.

    Args:
        path: Database file; default :func:`default_cache_path`. Parent folders are created.
        claim_ttl_s: A claim older than this is taken over even if its owner looks alive.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        claim_ttl_s: float = 900.0,
        refresh: bool = False,
    ):
        self.path = Path(path) if path is not None else default_cache_path()
        self.refresh = refresh
        """Ignore stored rows (every lookup misses) and replace them with the fresh answers."""
        self.claim_ttl_s = claim_ttl_s
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._read_conn: sqlite3.Connection | None = None
        """Lookups' own connection (see :meth:`_reader`)."""
        self.hits = 0
        self.writes = 0
        self.transactions = 0
        """Transactions of :meth:`store` (each stores rows and drops claims)."""
        self.checkpoints = 0
        """WAL checkpoints started on a thread of their own (see :meth:`_store_on`)."""
        self._since_checkpoint = 0
        self._checkpointer: threading.Thread | None = None
        self._legacy: bool | None = None
        """Rows without a generation key in the file (:meth:`_legacy_rows`), once asked."""

    # --- connection ---------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = self._open(create=True)
            # SQLite checkpoints inside a COMMIT every 1,000 WAL pages, and a checkpoint syncs
            # the files: with the event loop waiting on the commit, every call in flight
            # stalled. This connection never checkpoints; _store_on starts one on a thread.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            self._conn = conn
        return self._conn

    def _reader(self) -> sqlite3.Connection:
        """The lookups' connection while the writer's is busy (:meth:`_read`; call with
        ``_read_lock`` held). A WAL reader does not wait
        for a writer, so a lookup does not wait, with the event loop, for the store thread's
        transaction to end: on one connection and one lock it did (~0.13 s of a 10,000-pair
        ``judge-rl label`` run, up to 6 ms at a time)."""
        if self._read_conn is None:
            if self._conn is None:
                with self._lock:
                    self._db()  # the tables first
            self._read_conn = self._open()
        return self._read_conn

    def _read(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """The rows of a lookup's ``sql``, read through the writer's connection when no store or
        claim holds it (never waiting for it), else the reader's (:meth:`_reader`). A
        connection's page cache
        is thrown away whenever it starts a read and another connection has written since:
        the reader's was at nearly every lookup of a run (the store thread commits ~80 times a
        second), and every page of the index searches was read again (``pread``, ``malloc``);
        the writer's stays valid across its own commits (16 keys a lookup, 16 rows stored
        between two: 15.6 -> 9.9 us CPU a key in a fresh file, 54 -> 26 us beside 100,000
        older rows; ``pread`` calls of a 10,000-pair ``judge-rl label`` 23.5k -> 11.9k;
        issue 19 item 2)."""
        if self._lock.acquire(blocking=False):
            try:
                return self._db().execute(sql, args).fetchall()
            finally:
                self._lock.release()
        with self._read_lock:
            return self._reader().execute(sql, args).fetchall()

    def _open(self, *, create: bool = False) -> sqlite3.Connection:
        """A new connection (WAL, ``synchronous=NORMAL``); ``create``: the tables too."""
        from judge_rl.errors import ConfigError

        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if create:
                conn.executescript(SCHEMA)
                cols = {row[1] for row in conn.execute("PRAGMA table_info(judgments)")}
                if "gen" not in cols:  # a cache written before generation keys existed
                    # another process may add it first
                    with contextlib.suppress(sqlite3.OperationalError):
                        conn.execute("ALTER TABLE judgments ADD COLUMN gen TEXT")
                conn.execute("CREATE INDEX IF NOT EXISTS judgments_gen ON judgments(gen)")
        except (sqlite3.DatabaseError, OSError) as e:
            raise ConfigError(f"cannot open the judgment cache: {e}", file=str(self.path)) from None
        return conn

    def close(self) -> None:
        ck = self._checkpointer
        if ck is not None:
            ck.join()
        with self._read_lock:
            if self._read_conn is not None:
                self._read_conn.close()
                self._read_conn = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()  # the last connection to close checkpoints what is left
                self._conn = None

    def __enter__(self) -> JudgmentCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- values -------------------------------------------------------------------------------

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The stored values of those ``keys`` that are present (none with ``refresh``)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, str] = {}
        if self.refresh:
            return out
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for k, v in self._read(
                f"SELECT key, value FROM judgments WHERE key IN ({marks})", chunk
            ):
                out[k] = v
        return out

    def get_generations(self, gens: Iterable[str]) -> dict[str, str]:
        """Rows of other versions: generation key -> the newest stored value whose ``gen`` is
        that key, or (rows written before generation keys) whose key is."""
        gens = list(dict.fromkeys(gens))
        out: dict[str, str] = {}
        if self.refresh or not gens:
            return out
        for i in range(0, len(gens), 400):
            chunk = gens[i : i + 400]
            marks = ",".join("?" * len(chunk))
            for k, g, v in self._read(
                f"SELECT key, gen, value FROM judgments WHERE gen IN ({marks}) "
                f"OR key IN ({marks}) ORDER BY created",
                chunk + chunk,
            ):
                out[g if g in chunk else k] = v
        return out

    def get_with_generations(
        self, keys: Sequence[str], gens: Sequence[str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """:meth:`get_many` of ``keys`` and :meth:`get_generations` of ``gens`` in one statement
        (a streamed run looks up every chunk of 16 comparisons both ways: two statements cost
        ~0.5 ms a chunk). The second dict may also answer a gen whose key the first has."""
        found: dict[str, str] = {}
        older: dict[str, str] = {}
        keys = list(dict.fromkeys(keys))
        gens = list(dict.fromkeys(gens))
        if self.refresh or not keys:
            return found, older
        if len(keys) + 2 * len(gens) > 900:  # SQLite's variable limit: two statements
            return self.get_many(keys), self.get_generations(gens)
        legacy = self._legacy_rows()
        sql = _LOOKUP_SQL.get((len(keys), len(gens), legacy))
        if sql is None:
            marks, gmarks = ",".join("?" * len(keys)), ",".join("?" * len(gens))
            # no ORDER BY: SQLite opened a temporary b-tree to sort even no rows (~16 us of
            # ~70 a lookup); the rows found, if any, are put in that order here
            sql = (
                f"SELECT key, gen, value, created FROM judgments WHERE key IN ({marks}) "
                f"OR gen IN ({gmarks})" + (f" OR key IN ({gmarks})" if legacy else "")
            )
            _LOOKUP_SQL[(len(keys), len(gens), legacy)] = sql
        rows = self._read(sql, [*keys, *gens, *gens] if legacy else [*keys, *gens])
        if not rows:
            return found, older
        rows.sort(key=_created)
        want, gen_set = set(keys), set(gens)
        for k, g, v, _ in rows:
            if k in want:
                found[k] = v
            # as get_generations: the newest row whose gen (or, before gens, key) it is
            older[g if g in gen_set else k] = v
        return found, older

    def _legacy_rows(self) -> bool:
        """Whether the file holds rows without a generation key (written before generation keys
        existed, or by :meth:`put_many` without one), asked once: where it holds none, a
        chunk's lookup leaves out their search (``key IN`` the generation keys), a third of
        its index searches. A row of that kind stored later by another process (an older
        version of judge_rl) is then not re-parsed by this one: its comparison is judged
        again."""
        if self._legacy is None:
            self._legacy = bool(
                self._read("SELECT 1 FROM judgments WHERE gen IS NULL OR gen = '' LIMIT 1", ())
            )
        return self._legacy

    def put_many(self, items: Sequence[tuple[str, ...]]) -> None:
        """Store ``(key, judge_key, kind, value)`` rows (first writer wins) and drop their claims."""
        self.store(items, ())

    def store(self, items: Sequence[tuple[str, ...]], release: Iterable[str]) -> None:
        """One transaction: store finished rows ``(key, judge_key, kind, value[, gen])``, drop
        their claims and release ``release``. With ``refresh`` a row replaces a stored one."""
        with self._lock:
            self._store_on(self._db(), items, release)

    def _store_on(
        self, db: sqlite3.Connection, items: Sequence[tuple[str, ...]], release: Iterable[str]
    ) -> None:
        drop = [*(it[0] for it in items), *release]
        if not drop:
            return
        now = time.time()
        verb = "INSERT OR REPLACE" if self.refresh else "INSERT OR IGNORE"
        if self._legacy is False and any(len(it) < 5 or not it[4] for it in items):
            self._legacy = True  # a row without a generation key: lookups search for it too
        # one statement per ROWS_PER_STATEMENT rows, the rows in order (what ``executemany``
        # did row by row): each statement lets go of the interpreter lock once while SQLite
        # works, not once per row (issue 19 item 2). Built before the transaction: the store
        # thread waits for the interpreter lock between statements while the loop runs, and
        # holds the writer all the while (lookups go to the reader, claims wait)
        inserts: list[tuple[str, list[Any]]] = []
        for i in range(0, len(items), ROWS_PER_STATEMENT):
            part = items[i : i + ROWS_PER_STATEMENT]
            values: list[Any] = []
            for it in part:
                values += (it[0], it[1], it[2], it[3], now, it[4] if len(it) > 4 else None)
            sql = (
                f"{verb} INTO judgments(key, judge, kind, value, created, gen) VALUES "
                + ",".join(["(?, ?, ?, ?, ?, ?)"] * len(part))
            )
            inserts.append((sql, values))
        db.execute("BEGIN IMMEDIATE")
        try:
            if inserts:
                before = db.total_changes
                for sql, values in inserts:
                    db.execute(sql, values)
                self.writes += db.total_changes - before
            self._drop_claims(db, drop)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.transactions += 1
        self._since_checkpoint += len(drop)
        if self._since_checkpoint >= CHECKPOINT_ROWS:
            self._checkpoint_soon()

    def _drop_claims(self, db: sqlite3.Connection, keys: list[str]) -> None:
        """Delete our claims on ``keys`` (inside the caller's transaction)."""
        for i in range(0, len(keys), KEYS_PER_STATEMENT):
            part = keys[i : i + KEYS_PER_STATEMENT]
            db.execute(
                f"DELETE FROM claims WHERE owner = ? AND key IN ({','.join('?' * len(part))})",
                [self.owner, *part],
            )

    def _checkpoint_soon(self) -> None:
        """Copy the WAL into the database on a thread with its own connection (a passive
        checkpoint: writers go on meanwhile), unless one is running."""
        ck = self._checkpointer
        if ck is not None and ck.is_alive():
            return
        self._since_checkpoint = 0
        self.checkpoints += 1

        def run() -> None:
            _background()  # below the event loop, as the store thread
            try:
                conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                finally:
                    conn.close()
            except sqlite3.Error as e:  # the next one, or the last close, checkpoints instead
                log.debug("judgment cache checkpoint failed: %s", e)

        self._checkpointer = threading.Thread(target=run, name="judge-rl-checkpoint", daemon=True)
        self._checkpointer.start()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM judgments").fetchone()[0])

    # --- claims -------------------------------------------------------------------------------

    def claim(self, keys: Sequence[str]) -> tuple[set[str], set[str], dict[str, str]]:
        """Try to claim ``keys``. Returns ``(acquired, busy, done)``: keys now ours, keys a live
        process is judging, and keys already finished (with their values)."""
        acquired: set[str] = set()
        busy: set[str] = set()
        done: dict[str, str] = {}
        now = time.time()
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                # three statements per 400 keys, not three per key (judge-rl label claims
                # every comparison: issue 19 item 2)
                uniq = list(dict.fromkeys(keys))
                pid, expires = os.getpid(), now + self.claim_ttl_s
                for i in range(0, len(uniq), 400):
                    chunk = uniq[i : i + 400]
                    marks = ",".join("?" * len(chunk))
                    finished: dict[str, str] = {}
                    if not self.refresh:
                        finished = dict(
                            db.execute(
                                f"SELECT key, value FROM judgments WHERE key IN ({marks})", chunk
                            ).fetchall()
                        )
                    claims = {
                        r[0]: r[1:]
                        for r in db.execute(
                            "SELECT key, owner, host, pid, expires FROM claims "
                            f"WHERE key IN ({marks})",
                            chunk,
                        )
                    }
                    rows = []
                    for key in chunk:
                        if key in finished:
                            done[key] = finished[key]
                            continue
                        c = claims.get(key)
                        if (
                            c is not None
                            and c[0] != self.owner
                            and c[3] > now
                            and self._alive(c[1], c[2])
                        ):
                            busy.add(key)
                            continue
                        rows.append((key, self.owner, self.host, pid, expires))
                        acquired.add(key)
                    for j in range(0, len(rows), ROWS_PER_STATEMENT):
                        part = rows[j : j + ROWS_PER_STATEMENT]
                        db.execute(
                            "INSERT OR REPLACE INTO claims(key, owner, host, pid, expires) "
                            "VALUES " + ",".join(["(?, ?, ?, ?, ?)"] * len(part)),
                            [x for row in part for x in row],
                        )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return acquired, busy, done

    def release(self, keys: Iterable[str]) -> None:
        """Drop our claims on ``keys`` (their judging failed and was not cached)."""
        keys = list(keys)
        if not keys:
            return
        with self._lock:
            self._drop_claims(self._db(), keys)

    def _alive(self, host: str, pid: int) -> bool:
        if host != self.host:
            return True  # cannot tell; the claim's expiry decides
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


STORE_NICE = 10
"""How much lower the store thread's scheduling priority is than the event loop's (Linux): on
a busy machine a woken thread of equal priority takes the loop's CPU the moment the loop hands
it rows, and the loop waits behind other processes to get it back (0.23 s of a 10,000-judgment
run's loop time went to 510 such hand-overs, 13 ms of them CPU: issue 19 item 2). A lower
priority thread runs where a CPU is free, or after the loop's time slice; it needs ~0.04 ms of
CPU a judgment. The checkpoint thread and ``judge-rl label``'s closing thread run there too."""


def _background() -> None:
    """Lower the calling thread's priority by :data:`STORE_NICE` where the OS lets a thread
    have its own (Linux); nothing elsewhere."""
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + STORE_NICE)
    except (AttributeError, OSError):
        pass


class _StoreThread:
    """Stores finished rows on a thread of its own (one per :meth:`CachedJudge._run` batch of
    work, started on the first rows): :meth:`put` only queues, so the event loop never waits on
    a SQLite transaction (the module releases the interpreter lock while SQLite works). Batches
    queued while one is being stored go into the next transaction together. :meth:`close`
    returns once every batch put before it is stored; failures are kept in :attr:`errors`."""

    def __init__(self, cache: JudgmentCache) -> None:
        self.cache = cache
        self.errors: list[BaseException] = []
        self._queue: queue.SimpleQueue[tuple[list[tuple[str, ...]], list[str]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def put(self, rows: list[tuple[str, ...]], release: list[str]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="judge-rl-cache-store", daemon=True
            )
            self._thread.start()
        self._queue.put((rows, release))

    def _run(self) -> None:
        _background()
        q = self._queue
        stop = False
        while not stop:
            item = q.get()
            if item is None:
                return
            rows, release = list(item[0]), list(item[1])
            while not q.empty():  # what queued up meanwhile: the same transaction
                more = q.get_nowait()
                if more is None:
                    stop = True
                    break
                rows += more[0]
                release += more[1]
            try:
                self.cache.store(rows, release)
            except BaseException as e:  # handed to the event loop's next chunk (or the end)
                self.errors.append(e)

    def close(self) -> None:
        """Store what was put, then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None


class CachedJudge:
    """Wrap a judge with the cache; also the layer that hands work to the judge in chunks.

    Misses go to the inner judge in chunks of ``inner.batch_size`` (all chunks in flight at
    once: the backend's own concurrency limit paces them), and each chunk is written to the
    cache the moment it finishes, so an interrupted run loses at most the calls in flight.
    Identical items within one batch are judged once.

    Args:
        inner: Any judge with ``fingerprint``, ``compare`` and/or ``score``.
        cache: A :class:`JudgmentCache`, or None to only chunk (``--no-cache``).
        cache_errors: Failure kinds that are cached like verdicts.
        poll_s: How often to look for results another process is producing.
    """

    def __init__(
        self,
        inner: Any,
        cache: JudgmentCache | None,
        *,
        cache_errors: Sequence[str] = ("parse",),
        poll_s: float = 0.2,
    ) -> None:
        self.inner = inner
        self.cache = cache
        self.cache_errors = tuple(cache_errors)
        self.poll_s = poll_s
        self._estimated: dict[int, tuple[Comparison, str, str]] = {}
        """Keys :meth:`estimate` hashed, by ``id`` of the comparison (kept with it, so the id
        cannot be reused), for the :meth:`compare` that follows: each key hashed once."""

    @property
    def fingerprint(self) -> JudgeFingerprint:
        return self.inner.fingerprint  # type: ignore[no-any-return]

    @property
    def name(self) -> str:
        return self.fingerprint.name

    @property
    def batch_size(self) -> int:
        return max(1, int(getattr(self.inner, "batch_size", 1) or 1))

    @property
    def max_in_flight(self) -> int:
        """Chunks handed to the inner judge at once (its ``max_in_flight``, default 64)."""
        return max(1, int(getattr(self.inner, "max_in_flight", 64) or 64))

    # --- compare ------------------------------------------------------------------------------

    async def compare(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        fp = self.fingerprint
        if fp.kind in POINTWISE_KINDS:
            return await compare_by_scores(
                self.score,
                comparisons,
                fp,
                tie_margin=float(getattr(self.inner, "tie_margin", 0.0)),
                probability="bt" if fp.kind == "reward_model" else None,
            )
        keys, gens = self._compare_keys(fp, comparisons)
        values = await self._run(
            keys, list(comparisons), self.inner.compare, kind="judgment", gens=gens
        )
        return _bound(values, comparisons)

    async def compare_stream(
        self,
        chunks: AsyncIterator[Sequence[Comparison]],
        *,
        on_estimate: Any = None,
    ) -> list[Judgment]:
        """:meth:`compare` of the comparisons ``chunks`` yields, judging the first ones while
        the later ones are still coming (a streamed ``judge-rl label``: the input is read
        while the first chunk is judged). Results in input order, as :meth:`compare` gives
        them for the whole list; a comparison equal to an earlier one is judged once.

        ``on_estimate(Estimate)``: called once, when ``chunks`` is exhausted (judging goes
        on), with what :meth:`estimate` would have said of the whole input before the run:
        the calls still to make after cache hits, from each chunk's own cache lookup.
        Pointwise kinds read every chunk first, then estimate and compare."""
        fp = self.fingerprint
        comps: list[Comparison] = []
        if fp.kind in POINTWISE_KINDS:
            async for chunk in chunks:
                comps.extend(chunk)
            if on_estimate is not None:
                on_estimate(self.estimate(comps))
            return await self.compare(comps)
        inner_estimate = getattr(self.inner, "estimate", None)
        params = inspect.signature(inner_estimate).parameters if inner_estimate else {}
        kw: dict[str, Any] = {}
        if "keep" in params:
            kw["keep"] = True  # the judge renders each request here once, kept for compare
        per_call = getattr(self.inner, "completion_estimate", None)
        if "completion" in params and per_call is not None:
            # as before the first call: replies that come back while the input is read do
            # not change what the estimate assumes for the later chunks
            kw["completion"] = per_call()
        total = Estimate()

        def on_batch(todo: list[Comparison], hits: int) -> None:
            nonlocal total
            if inner_estimate is None:
                est = Estimate()
            else:
                est = inner_estimate(todo, **kw)
            est.cached += hits
            total = total + est

        async def batches() -> AsyncIterator[tuple[list[str], list[Any], list[str] | None]]:
            async for chunk in chunks:
                chunk = list(chunk)
                comps.extend(chunk)
                keys, gens = _compare_keys(fp, chunk)
                yield keys, chunk, gens
            total.comparisons = total.units = len(comps)
            if on_estimate is not None:
                on_estimate(total)

        values = await self._run_stream(
            batches(), self.inner.compare, kind="judgment", on_batch=on_batch
        )
        return _bound(values, comps)

    async def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        fp = self.fingerprint
        keys, gens = _score_keys(fp, candidates)
        values = await self._run(keys, list(candidates), self.inner.score, kind="score", gens=gens)
        out = []
        for (s, cached), cand in zip(values, candidates, strict=True):
            if s.candidate_id == cand.id and s.prompt_id == cand.prompt_id:
                out.append(s)
                continue
            out.append(
                s.model_copy(
                    update={
                        "candidate_id": cand.id,
                        "prompt_id": cand.prompt_id,
                        "cached": cached or s.cached,
                    }
                )
            )
        return out

    def estimate(self, comparisons: Sequence[Comparison]) -> Estimate:
        """Calls still to make for ``comparisons``, after cache hits."""
        fp = self.fingerprint
        fn = getattr(self.inner, "estimate", None)
        if fp.kind in POINTWISE_KINDS:
            both = [c for comp in comparisons for c in (comp.a, comp.b)]
            by_key: dict[str, Candidate] = {}
            for k, cand in zip(_score_keys(fp, both)[0], both, strict=True):
                by_key.setdefault(k, cand)  # the first candidate of each key, in order
            hits = self.cache.get_many(by_key) if self.cache is not None else {}
            misses = [c for k, c in by_key.items() if k not in hits]
            est_fn = getattr(self.inner, "estimate_scores", None)
            est = est_fn(misses) if est_fn else Estimate()
            est.cached += len(hits) * (est.calls // max(1, len(misses)) if misses else 1)
            est.comparisons = len(comparisons)
            est.units = 2 * len(comparisons)
            return est
        keys, gens = _compare_keys(fp, comparisons)
        self._estimated = {}
        if len(comparisons) <= MAX_ESTIMATED:
            self._estimated = {
                id(c): (c, k, g) for c, k, g in zip(comparisons, keys, gens, strict=True)
            }
        uniq: dict[str, Comparison] = {}
        for k, c in zip(keys, comparisons, strict=True):
            uniq.setdefault(k, c)  # the first comparison of each key, in order
        hits = self.cache.get_many(uniq) if self.cache is not None else {}
        todo = [c for k, c in uniq.items() if k not in hits]
        est = fn(todo) if fn else Estimate()
        est.cached += len(hits)
        est.comparisons = len(comparisons)
        est.units = len(comparisons)
        return est

    def _compare_keys(
        self, fp: JudgeFingerprint, comps: Sequence[Comparison]
    ) -> tuple[list[str], list[str]]:
        """:func:`_compare_keys`, taking the keys :meth:`estimate` hashed for these objects."""
        memo = self._estimated
        if not memo:
            return _compare_keys(fp, comps)
        keys: list[str] = []
        gens: list[str] = []
        fk: str | None = None
        for c in comps:
            hit = memo.get(id(c))
            if hit is not None and hit[0] is c:
                keys.append(hit[1])
                gens.append(hit[2])
                continue
            fk = fk or fp.key
            gens.append(compare_gen_key(fp, c, fp_key=fk))
            keys.append(compare_key(fp, c, gen=gens[-1]))
        return keys, gens

    async def aclose(self) -> None:
        self._estimated = {}
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()

    # --- the engine ---------------------------------------------------------------------------

    def _reparse_older(
        self,
        cache: JudgmentCache,
        pending: list[str],
        gen_of: dict[str, str],
        kind: str,
        finish: Any,
        older: dict[str, str] | None = None,
    ) -> list[str]:
        """Answer pending keys from rows of an older parser/judging version by re-reading their
        stored raw output (the judge's ``reparse``); returns the keys still to judge.
        ``older``: those rows by generation key when the caller has looked them up."""
        reparse = getattr(self.inner, "reparse", None)
        if reparse is None or not gen_of or not pending:
            return pending
        if older is None:
            older = cache.get_generations(gen_of[k] for k in pending if gen_of.get(k))
        if not older:
            return pending
        rows: list[tuple[str, ...]] = []
        left = []
        for k in pending:
            value = older.get(gen_of.get(k, ""))
            rec = reparse(_parse(kind, value)) if value is not None else None
            if rec is None:
                left.append(k)
                continue
            if self._cacheable(rec):
                rows.append((k, self.fingerprint.key, kind, rec.model_dump_json(), gen_of[k]))
            finish(k, rec, True)
        if rows:
            cache.store(rows, ())
        return left

    def _cacheable(self, rec: Judgment | Score) -> bool:
        if rec.error is None:
            return True
        return rec.error.split(":", 1)[0].strip() in self.cache_errors

    async def _run(
        self,
        keys: list[str],
        items: list[Any],
        fn: Any,
        *,
        kind: str,
        gens: list[str] | None = None,
    ) -> list[tuple[Any, bool]]:
        """``(record, from_cache)`` for every key, in order: :meth:`_run_stream` over one
        batch (looked up in full before any worker starts)."""

        async def one() -> AsyncIterator[tuple[list[str], list[Any], list[str] | None]]:
            yield keys, items, gens

        return await self._run_stream(one(), fn, kind=kind, streamed=False)

    async def _run_stream(
        self,
        batches: AsyncIterator[tuple[list[str], list[Any], list[str] | None]],
        fn: Any,
        *,
        kind: str,
        streamed: bool = True,
        on_batch: Any = None,
    ) -> list[tuple[Any, bool]]:
        """``(record, from_cache)`` for every key of ``batches`` (``(keys, items, generation
        keys or None)`` each), in order.

        Steps: (1) each batch's new keys are looked up (finished keys answered from the cache;
        ``on_batch(items still to judge, hits)`` is called with what is left); (2) the rest go
        to ``max_in_flight`` workers in chunks of ``batch_size``, each claimed shortly before it
        runs (claims are taken ``max_in_flight`` chunks at a time, one transaction), finished
        chunks stored ``max_in_flight // STORE_EVERY`` keys at a time (one transaction; none
        waits longer than ``STORE_AFTER_S``, and what finished is stored when the run is
        interrupted); (3) keys another live process claimed are polled until its results land
        (or its claims lapse). ``streamed``: the workers start at once and take the keys as
        the batches arrive (a streamed run judges its first comparisons while the rest of its
        input is read); otherwise every batch is looked up before the first worker starts. A
        key seen in an earlier batch is judged once.
        """
        order: list[str] = []  # the key of every item, in order
        by_key: dict[str, list[int]] = {}
        item_of: dict[str, Any] = {}
        gen_of: dict[str, str] = {}
        result: dict[str, tuple[Any, bool]] = {}
        judge_key = self.fingerprint.key
        cache = self.cache

        def finish(key: str, rec: Any, cached: bool) -> None:
            result[key] = (rec, cached)
            for _ in by_key[key]:
                report(kind, rec)

        def hit(key: str, value: str) -> None:
            if cache is not None:
                cache.hits += len(by_key[key])
            finish(key, _parse(kind, value), True)

        def add(keys: list[str], items: list[Any], gens: list[str] | None) -> list[str]:
            """Register a batch; returns its keys not seen before, in order."""
            new = []
            for i, (k, item) in enumerate(zip(keys, items, strict=True)):
                at = by_key.get(k)
                order.append(k)
                if at is None:
                    by_key[k] = [len(order) - 1]
                    item_of[k] = item
                    if gens is not None:
                        gen_of[k] = gens[i]
                    new.append(k)
                    continue
                at.append(len(order) - 1)
                done = result.get(k)
                if done is not None:  # finished in an earlier batch: this copy's progress now
                    if done[1] and cache is not None:
                        cache.hits += 1
                    report(kind, done[0])
            return new

        def lookup(new: list[str]) -> list[str]:
            """The keys of ``new`` still to judge after the cache (and older versions)."""
            if cache is None:
                if on_batch is not None:
                    on_batch([item_of[k] for k in new], 0)
                return new
            older: dict[str, str] | None = None
            if not new:
                found: dict[str, str] = {}
            elif gen_of and getattr(self.inner, "reparse", None) is not None:
                # this chunk's rows and older versions' rows in one statement
                found, older = cache.get_with_generations(
                    new, [gen_of[k] for k in new if gen_of.get(k)]
                )
            else:
                found = cache.get_many(new)
            for k, v in found.items():
                hit(k, v)
            todo = [k for k in new if k not in found]
            if on_batch is not None:
                on_batch([item_of[k] for k in todo], len(found))
            return self._reparse_older(cache, todo, gen_of, kind, finish, older)

        async def todo_batches() -> AsyncIterator[list[str]]:
            async for keys, items, gens in batches:
                todo = lookup(add(keys, items, gens))
                if todo:
                    yield todo

        async def given(keys: list[str]) -> AsyncIterator[list[str]]:
            yield keys

        async def judge_keys(todo_in: AsyncIterator[list[str]], n: int | None) -> list[str]:
            """Judge the keys ``todo_in`` yields (``n`` of them when known); returns the keys
            another process is judging."""
            size = self.batch_size
            # Bounded chunks in flight: enough to keep the backend saturated, few enough that the
            # budget is checked call by call with costs seen so far (not all reserved at t=0).
            # ``max_in_flight`` workers take the chunks in order (no task and semaphore wait per
            # chunk: ~10% of the judge path's CPU for one-comparison chunks).
            queue: collections.deque[str] = collections.deque()
            ended = False
            # Workers with nothing to do wait on a future each; new keys wake one worker per
            # chunk they make (an Event woke every idle worker for each chunk the reader
            # added, ~10 loop callbacks per judgment while a streamed input was read).
            idle: collections.deque[asyncio.Future[None]] = collections.deque()
            status: dict[str, str] = {}
            busy_keys: list[str] = []
            # Finished rows are stored a few chunks at a time (one transaction per
            # ``store_at`` keys, and none waits longer than STORE_AFTER_S): one transaction per
            # chunk cost ~0.1 ms CPU per judgment (issue 19 item 2). The transactions run on a
            # thread of their own (:class:`_StoreThread`), so the event loop never waits on
            # SQLite; what a worker's chunk returns is turned into rows and progress by
            # ``drain`` after the worker has sent its next request (a slot of the backend is
            # never idle while the loop serialises a finished record).
            rows: list[tuple[str, ...]] = []
            released: list[str] = []
            store_at = max(1, self.max_in_flight // STORE_EVERY)
            timer: asyncio.TimerHandle | None = None
            failed: list[BaseException] = []
            writer = _StoreThread(cache) if cache is not None else None
            finished: collections.deque[tuple[list[str], Sequence[Any]]] = collections.deque()
            drain_at: asyncio.Handle | None = None
            loop = asyncio.get_running_loop()

            def store() -> None:
                nonlocal timer
                if timer is not None:
                    timer.cancel()
                    timer = None
                if writer is not None and (rows or released):
                    batch, rel = rows[:], released[:]
                    rows.clear()
                    released.clear()
                    writer.put(batch, rel)

            def store_late() -> None:  # the timer's
                nonlocal timer
                timer = None
                store()

            def drain() -> None:
                """Rows, results and progress of the chunks finished so far, in order."""
                nonlocal drain_at, timer
                drain_at = None
                while finished:
                    chunk, recs = finished.popleft()
                    for k, rec in zip(chunk, recs, strict=True):
                        if cache is not None:
                            if rec.error is None or self._cacheable(rec):
                                # model_dump_json's bytes, without its keyword handling
                                # (~3 us of ~14 a judgment)
                                value = type(rec).__pydantic_serializer__.to_json(rec).decode()
                                rows.append((k, judge_key, kind, value, gen_of.get(k, "")))
                            else:
                                released.append(k)
                        finish(k, rec, False)
                if len(rows) + len(released) >= store_at:
                    store()
                elif timer is None and (rows or released):
                    timer = loop.call_later(STORE_AFTER_S, store_late)

            def drain_soon() -> None:  # the loop's: an error goes to the next chunk's worker
                try:
                    drain()
                except Exception as e:
                    failed.append(e)

            def claim(chunk: list[str]) -> None:
                # Claim the chunk and the keys queued after it, max_in_flight chunks in all (one
                # transaction): processes on the same input split the work instead of one of
                # them claiming everything up front. Claims go in queue order, so the keys
                # still queued after an unclaimed chunk are unclaimed too.
                assert cache is not None
                room = (self.max_in_flight - 1) * size
                group = chunk + list(itertools.islice(queue, room))
                acquired, busy, done = cache.claim(group)
                for k in group:
                    status[k] = "acquired" if k in acquired else ("busy" if k in busy else "done")
                for k, v in done.items():
                    hit(k, v)
                busy_keys.extend(k for k in group if k in busy)

            def raise_failed() -> None:
                if writer is not None and writer.errors:
                    failed.extend(writer.errors)
                    writer.errors.clear()
                if failed:
                    raise failed.pop()

            async def one(chunk: list[str]) -> None:
                nonlocal drain_at
                raise_failed()
                if cache is not None:
                    if any(k not in status for k in chunk):
                        claim(chunk)
                    chunk = [k for k in chunk if status.get(k) == "acquired"]
                if not chunk:
                    return
                try:
                    recs = await fn([item_of[k] for k in chunk])
                except BaseException:
                    if cache is not None:
                        cache.release(chunk)
                    raise
                finished.append((chunk, recs))
                if drain_at is None:
                    drain_at = loop.call_soon(drain_soon)

            def wake(k: int) -> None:
                while k > 0 and idle:
                    waiter = idle.popleft()
                    if not waiter.done():  # a cancelled worker's is done
                        waiter.set_result(None)
                        k -= 1

            async def feed() -> None:
                nonlocal ended
                try:
                    async for keys in todo_in:
                        queue.extend(keys)
                        wake(-(-len(keys) // size))
                finally:
                    ended = True
                    wake(len(idle))

            async def worker() -> None:
                # one shared queue: each chunk to one worker, in order
                while True:
                    if queue:
                        await one([queue.popleft() for _ in range(min(size, len(queue)))])
                    elif ended:
                        return
                    else:
                        waiter = loop.create_future()
                        idle.append(waiter)
                        await waiter

            workers = self.max_in_flight if n is None else min(self.max_in_flight, -(-n // size))
            tasks = [asyncio.ensure_future(feed())]
            tasks += [asyncio.ensure_future(worker()) for _ in range(max(1, workers))]
            try:
                try:
                    await asyncio.gather(*tasks)
                except BaseException:
                    # the input's reader or a worker failed, or the run was interrupted: the
                    # other workers stop too (their claims released) before what finished is
                    # stored below
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    raise
            finally:
                if drain_at is not None:
                    drain_at.cancel()
                try:
                    drain()  # what finished, even when interrupted
                finally:
                    store()  # cancels the timer
                    if writer is not None:
                        writer.close()  # every batch stored before this returns
            raise_failed()
            return busy_keys

        if streamed:
            pending = await judge_keys(todo_batches(), None)
        else:
            pending = []
            async for todo in todo_batches():
                pending += todo
            if pending:
                pending = await judge_keys(given(pending), len(pending))
        while pending:
            log.info("waiting for %d judgments another process is making", len(pending))
            await asyncio.sleep(self.poll_s)
            busy_set = set(await judge_keys(given(pending), len(pending)))
            pending = [k for k in pending if k in busy_set]
        return [result[k] for k in order]


def _bound(values: list[tuple[Any, bool]], comparisons: Sequence[Comparison]) -> list[Judgment]:
    """The judgments of ``values`` (by key, in order) bound to ``comparisons``' ids."""
    out = []
    for (rec, cached), c in zip(values, comparisons, strict=True):
        same = (rec.a_id, rec.b_id, rec.comparison_id, rec.prompt_id) == (
            c.a.id,
            c.b.id,
            c.id,
            c.prompt_id,
        )
        out.append(rec if same else _rebind_judgment(rec, c, cached))
    return out


def _parse(kind: str, value: str) -> Judgment | Score:
    """A cached record, marked as coming from the cache (for progress reporting)."""
    if kind == "judgment":
        j = Judgment.model_validate_json(value)
        return j.model_copy(
            update={"calls": [c.model_copy(update={"cached": True}) for c in j.calls]}
        )
    return Score.model_validate_json(value).model_copy(update={"cached": True})


def _rebind_judgment(j: Judgment, c: Comparison, cached: bool) -> Judgment:
    """Re-bind a judgment of the same content to ``c``'s ids (by position: same content order)."""
    ids = {j.a_id: c.a.id, j.b_id: c.b.id}
    calls = [
        call.model_copy(
            update={
                "first_id": ids.get(call.first_id, call.first_id),
                "cached": cached or call.cached,
            }
        )
        for call in j.calls
    ]
    members = [_rebind_judgment(m, c, cached) for m in j.members]
    return j.model_copy(
        update={
            "comparison_id": c.id,
            "prompt_id": c.prompt_id,
            "a_id": c.a.id,
            "b_id": c.b.id,
            "calls": calls,
            "members": members,
        }
    )


__all__ = [
    "KEY_VERSIONS",
    "CachedJudge",
    "JudgmentCache",
    "compare_gen_key",
    "compare_key",
    "default_cache_path",
    "score_gen_key",
    "score_key",
]
