"""The judgment cache's work per judgment in a run (issue 19 item 2): which connection a lookup
reads through, how many transactions a run's stores take, what a stored row's bytes are."""

from __future__ import annotations

import threading

from judge_rl.judge.cache import JudgmentCache


def _traced(cache: JudgmentCache) -> tuple[list[str], list[str]]:
    """The statements of the writer's and of the reader's connection from now on."""
    writer: list[str] = []
    reader: list[str] = []
    cache._db().set_trace_callback(writer.append)
    with cache._read_lock:
        cache._reader().set_trace_callback(reader.append)
    return writer, reader


def _selects(trace: list[str]) -> list[str]:
    return [s for s in trace if s.lstrip().upper().startswith("SELECT")]


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
