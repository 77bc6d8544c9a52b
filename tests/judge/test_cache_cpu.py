"""The judgment cache's work per judgment in a run (issue 19 item 2): which connection a lookup
reads through, how many transactions a run's stores take, what a stored row's bytes are."""

from __future__ import annotations

import asyncio
import threading

from judge_rl.judge.cache import CachedJudge, JudgmentCache, compare_gen_key, compare_key
from judge_rl.types import JudgeCall, JudgeFingerprint, Judgment


def _traced(cache: JudgmentCache) -> tuple[list[str], list[str]]:
    """The statements of the writer's and of the reader's connection from now on."""
    writer: list[str] = []
    reader: list[str] = []
    cache._db().set_trace_callback(writer.append)
    with cache._read_lock:
        cache._reader().set_trace_callback(reader.append)
    return writer, reader


def _selects(trace: list[str]) -> list[str]:
    """The lookups' statements (not the once-per-file question whether rows lack a gen)."""
    return [s for s in trace if s.lstrip().upper().startswith("SELECT") and "gen IS NULL" not in s]


def test_a_lookup_reads_through_the_writer_connection_when_no_store_holds_it(tmp_path):
    """The reader connection's page cache was thrown away at nearly every lookup of a run (the
    store thread had committed since), so each lookup read its index pages again; the writer's
    stays valid across its own commits."""
    cache = JudgmentCache(tmp_path / "c.sqlite")
    cache.store([("k1", "j", "judgment", "v1", "g1")], ())
    writer, reader = _traced(cache)
    assert cache.get_many(["k1", "k2"]) == {"k1": "v1"}
    assert cache.get_with_generations(["k1", "k3"], ["g1", "g3"]) == ({"k1": "v1"}, {"g1": "v1"})
    assert cache.get_generations(["g1"]) == {"g1": "v1"}
    assert len(_selects(writer)) == 3 and _selects(reader) == []
    cache.close()


def test_a_lookup_does_not_wait_for_a_store_in_progress(tmp_path):
    """While another thread holds the writer (a store's transaction), a lookup reads through the
    reader connection at once, and sees what was committed."""
    cache = JudgmentCache(tmp_path / "c.sqlite")
    cache.store([("k1", "j", "judgment", "v1", "g1")], ())
    writer, reader = _traced(cache)
    held, done = threading.Event(), threading.Event()

    def store_in_progress() -> None:
        with cache._lock:
            held.set()
            done.wait(30)

    t = threading.Thread(target=store_in_progress)
    t.start()
    try:
        assert held.wait(30)
        assert cache.get_many(["k1"]) == {"k1": "v1"}  # would deadlock-wait 30 s otherwise
        assert not done.is_set()
    finally:
        done.set()
        t.join()
    assert len(_selects(reader)) == 1 and _selects(writer) == []
    cache.close()


class _Instant:
    """An inner judge answering every comparison at once (``b``, or a parse failure for a
    prompt starting with ``bad``), its records with every optional field the dump may leave
    out or keep."""

    batch_size = 1
    max_in_flight = 64

    def __init__(self) -> None:
        self.fingerprint = JudgeFingerprint(name="instant", kind="pairwise", params={"t": 0.0})
        self.calls = 0

    async def compare(self, comps):  # type: ignore[no-untyped-def]
        out = []
        for c in comps:
            self.calls += 1
            bad = c.prompt.startswith("bad")
            call = JudgeCall(
                first_id=c.a.id,
                winner=None if bad else "b",
                raw="é\n[[B]]" + "x" * (300 if c.prompt.endswith("7") else 0),
                error="parse: no verdict" if bad else None,
                note="low_mass" if c.prompt.endswith("3") else None,
                attempt_latency_s=[0.1],
            )
            out.append(
                Judgment(
                    comparison_id=c.id,
                    prompt_id=c.prompt_id,
                    a_id=c.a.id,
                    b_id=c.b.id,
                    winner=call.winner,
                    judge=self.fingerprint,
                    calls=[call],
                    error=call.error,
                )
            )
        return out


def test_a_run_stores_model_dump_json_bytes_without_calling_it(tmp_path, make_comp, monkeypatch):
    """The rows a run stores are each record's ``model_dump_json`` (read back equal), made by
    its serializer directly: ``model_dump_json``'s keyword handling was ~3 us of the ~14 a
    judgment spent serialising on the event loop."""
    comps = [make_comp(f"{'bad' if i % 5 == 0 else 'q'}{i}", f"a{i}", f"b{i}") for i in range(40)]
    calls = {"n": 0}
    real = Judgment.model_dump_json

    def counted(self, *a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(self, *a, **k)

    monkeypatch.setattr(Judgment, "model_dump_json", counted)
    cache = JudgmentCache(tmp_path / "c.sqlite")
    inner = _Instant()
    got = asyncio.run(CachedJudge(inner, cache).compare(comps))
    assert inner.calls == 40 and calls["n"] == 0
    stored = dict(cache._db().execute("SELECT key, value FROM judgments"))
    assert len(stored) == 40  # parse failures are cached too
    monkeypatch.setattr(Judgment, "model_dump_json", real)
    assert sorted(stored.values()) == sorted(j.model_dump_json() for j in got)
    cache.close()


def test_the_writer_connection_caches_enough_pages_for_the_key_indexes(tmp_path):
    """Lookups read through the writer's connection: its page cache holds the two key indexes of
    a large cache file (32 MiB: ~8,000 pages); SQLite's default of 2 MiB held ~500 pages, fewer
    than those of 50,000 rows, and a run read the same index pages again and again."""
    cache = JudgmentCache(tmp_path / "c.sqlite")
    assert cache._db().execute("PRAGMA cache_size").fetchone()[0] == -32_768
    cache.close()


def test_a_chunks_keys_are_compare_key_and_compare_gen_key_in_one_loop(monkeypatch, make_comp):
    """The keys a streamed run hashes per chunk (``_compare_keys``) are each comparison's
    :func:`compare_key` and :func:`compare_gen_key`, written in one loop without a call of
    ``_key_hash`` per comparison; a multi-turn judge (turns in the key) takes the general path."""
    from judge_rl.judge import cache as cache_mod

    texts = ["plain", 'quote " and \\ back', "é ü 漢字 🙂", "line\nbreak\ttab\x00nul", ""]
    comps = [
        make_comp(a, b, prompt=p, i=i, reference=r)
        for i, (p, a, b, r) in enumerate(
            (p, a, b, r)
            for p in texts[:3]
            for a in texts
            for b in texts[2:]
            for r in (None, "ref", texts[3])
        )
    ]
    fp = JudgeFingerprint(name="k", kind="pairwise", params={"temperature": 0.0})
    want = ([compare_key(fp, c) for c in comps], [compare_gen_key(fp, c) for c in comps])
    calls = {"n": 0}
    real = cache_mod._key_hash

    def counted(parts):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(parts)

    monkeypatch.setattr(cache_mod, "_key_hash", counted)
    assert cache_mod._compare_keys(fp, comps) == want
    assert calls["n"] == 0
    turns = JudgeFingerprint(name="k", kind="pairwise", params={"turn": 2})
    multi = [
        c.model_copy(update={"a": c.a.model_copy(update={"metadata": {"turns": ["t"]}})})
        for c in comps[:5]
    ]
    monkeypatch.setattr(cache_mod, "KEY_VERSIONS", {"parser": "x", "judging": "y"})
    assert cache_mod._compare_keys(turns, multi) == (
        [compare_key(turns, c) for c in multi],
        [compare_gen_key(turns, c) for c in multi],
    )
    assert calls["n"] > 0


def test_a_chunks_lookup_sorts_in_python_only_the_rows_it_found(tmp_path):
    """``get_with_generations`` (a streamed run's lookup of each chunk) has no ORDER BY: SQLite
    built a temporary b-tree to sort even when nothing was found (~16 us of ~70 a lookup).
    The rows found are ordered by ``created`` here: the newest older row answers its gen."""
    cache = JudgmentCache(tmp_path / "c.sqlite")
    for i, key in enumerate(["old-b", "old-a", "old-c"]):  # one transaction each: created
        cache.store([(key, "j", "judgment", f"v{i}", "g1")], ())
    cache.store([("k2", "j", "judgment", "cur", "g2")], ())
    writer, reader = _traced(cache)
    assert cache.get_with_generations(["k1", "k2", "k9"], ["g1", "g2", "g9"]) == (
        {"k2": "cur"},
        {"g1": "v2", "g2": "cur"},
    )
    assert cache.get_with_generations(["k9"], ["g9"]) == ({}, {})
    (first, second) = _selects(writer + reader)
    assert "ORDER BY" not in first.upper() and "ORDER BY" not in second.upper()
    cache.close()


def test_a_chunks_lookup_searches_keys_as_generation_keys_only_where_such_rows_exist(tmp_path):
    """Rows written before generation keys existed are found by their key being a generation
    key (a third of a lookup's index searches); a file without rows lacking a generation key
    is not searched for them, until such a row is stored."""
    cache = JudgmentCache(tmp_path / "c.sqlite")
    cache.store([("k1", "j", "judgment", "v1", "g1")], ())
    writer, reader = _traced(cache)
    assert cache.get_with_generations(["k2"], ["g2"]) == ({}, {})
    cache.put_many([("g2", "j", "judgment", "legacy")])  # no generation key: keyed by it
    assert cache.get_with_generations(["k2"], ["g2"]) == ({}, {"g2": "legacy"})
    lookups = [s for s in _selects(writer + reader) if "created" in s]
    assert [s.count(" IN (") for s in lookups] == [2, 3]
    cache.close()
    again = JudgmentCache(tmp_path / "c.sqlite")  # a file with such a row, opened anew
    assert again.get_with_generations(["k3", "k2"], ["g3", "g2"]) == ({}, {"g2": "legacy"})
    again.close()
