"""Issue 15, failure 8: the cache key covers what changes verdicts (parser and judging versions,
local model identity and dtype), stored raw outputs are re-parsed after a parser change, and
``--refresh`` asks again."""

from __future__ import annotations

import asyncio

import pytest

from judge_rl.backends.base import ChatResult
from judge_rl.judge.cache import (
    CachedJudge,
    JudgmentCache,
    compare_gen_key,
    compare_key,
)
from judge_rl.judge.llm import LLMJudge
from judge_rl.types import JudgeCall, Judgment

TEMPLATE = "Q: {{ prompt }}\nA: {{ response_a }}\nB: {{ response_b }}\n"


class Counting:
    name = "counting"
    model = "counting"

    def __init__(self, text="fresh\n[[B]]"):
        self.calls = 0
        self.text = text

    async def chat(self, requests):
        self.calls += len(requests)
        return [ChatResult(texts=[self.text], finish_reasons=["stop"]) for _ in requests]

    async def aclose(self):
        return None


def _old_row(cache, judge, comp, *, raw, winner=None, error=None):
    """A row as the previous version stored it: under the key without versions."""
    fp = judge.fingerprint
    call = JudgeCall(first_id=comp.a.id, winner=winner, raw=raw, error=error)
    j = Judgment(
        comparison_id=comp.id,
        prompt_id=comp.prompt_id,
        a_id=comp.a.id,
        b_id=comp.b.id,
        winner=winner,
        judge=fp,
        calls=[call],
        error=error,
    )
    cache.put_many([(compare_gen_key(fp, comp), fp.key, "judgment", j.model_dump_json())])


def test_issue15_8_key_holds_the_versions(make_comp):
    judge = LLMJudge(Counting(), TEMPLATE, name="t")
    c = make_comp("x", "y")
    assert compare_key(judge.fingerprint, c) != compare_gen_key(judge.fingerprint, c)


def test_issue15_8_cached_parse_failure_is_reparsed_not_permanent(make_comp, cache_path):
    backend = Counting()
    llm = LLMJudge(backend, TEMPLATE, name="t")
    c = make_comp("x", "y")
    with JudgmentCache(cache_path) as cache:
        _old_row(cache, llm, c, raw="B is right.\nFinal verdict: [[B]]", error="parse: old")
        [j] = asyncio.run(CachedJudge(llm, cache).compare([c]))
    assert j.winner == "b" and j.error is None
    assert backend.calls == 0  # re-read from the stored raw output, no new model call


def test_issue15_8_parser_fix_reaches_cached_verdicts(make_comp, cache_path):
    backend = Counting()
    llm = LLMJudge(backend, TEMPLATE, name="t")
    c = make_comp("x", "y")
    raw = 'Response B ends with "[[B]]" to sway me; A is correct.\n[[A]]'
    with JudgmentCache(cache_path) as cache:
        _old_row(cache, llm, c, raw=raw, winner="b")  # the old parser took the quoted marker
        [j] = asyncio.run(CachedJudge(llm, cache).compare([c]))
        [again] = asyncio.run(CachedJudge(llm, cache).compare([c]))
    assert j.winner == "a" and again.winner == "a" and backend.calls == 0


def test_issue15_8_refresh_asks_again_and_replaces(make_comp, cache_path):
    c = make_comp("x", "y")
    first = Counting("old\n[[A]]")
    with JudgmentCache(cache_path) as cache:
        [j0] = asyncio.run(CachedJudge(LLMJudge(first, TEMPLATE, name="t"), cache).compare([c]))
    second = Counting("new\n[[B]]")
    with JudgmentCache(cache_path) as cache:
        [hit] = asyncio.run(CachedJudge(LLMJudge(second, TEMPLATE, name="t"), cache).compare([c]))
        assert second.calls == 0 and hit.winner == "a"
    with JudgmentCache(cache_path, refresh=True) as cache:
        [j1] = asyncio.run(CachedJudge(LLMJudge(second, TEMPLATE, name="t"), cache).compare([c]))
    assert second.calls == 1 and j0.winner == "a" and j1.winner == "b"
    with JudgmentCache(cache_path) as cache:
        [j2] = asyncio.run(
            CachedJudge(LLMJudge(Counting(), TEMPLATE, name="t"), cache).compare([c])
        )
    assert j2.winner == "b"  # the fresh answer replaced the stored one


def test_issue15_8_local_model_identity_and_dtype(tmp_path):
    from judge_rl.backends.hf import HFBackend, model_identity
    from judge_rl.models import save_tiny_model

    folder = save_tiny_model(tmp_path / "m")
    be = HFBackend(str(folder), device="cpu", dtype="float32")
    params = be.fingerprint_params()
    assert params["dtype"] == "float32" and params["weights"] == model_identity(str(folder))
    before = model_identity(str(folder))
    import os

    weights = next(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rewritten in place
    assert model_identity(str(folder)) != before
    be16 = HFBackend(str(folder), device="cpu", dtype="bfloat16")
    assert be16.fingerprint_params()["dtype"] == "bfloat16"
    t32 = LLMJudge(be, TEMPLATE, name="t").fingerprint.key
    t16 = LLMJudge(be16, TEMPLATE, name="t").fingerprint.key
    assert t32 != t16


@pytest.mark.parametrize("cmd", ["label", "audit"])
def test_issue15_8_refresh_flag_exists(cmd):
    import argparse

    from judge_rl.commands import audit, label

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    (label if cmd == "label" else audit).add_parser(sub)
    args = parser.parse_args(
        [cmd, "--judge", "x", "--refresh"]
        + (["--input", "i", "--output", "o.jsonl"] if cmd == "label" else ["--human", "h"])
    )
    assert args.refresh is True


def test_one_statement_answers_what_get_many_and_get_generations_answer(cache_path):
    """A streamed run looks up each chunk's keys and, for the misses, older versions' rows:
    two statements a chunk (~0.5 ms). ``get_with_generations`` is one, with the same answers
    for the keys it finds and the generations of those it does not: current rows, rows of an
    older version (by ``gen``, the newest wins), rows from before generation keys (key = gen)."""
    import random

    rng = random.Random(7)
    cache = JudgmentCache(cache_path)
    rows = []
    for i in range(300):
        kind = rng.choice(["current", "older", "older2", "legacy", "none"])
        key, gen = f"k{i}", f"g{i}"
        if kind == "current":
            rows.append((key, "j", "judgment", f"cur{i}", gen))
        elif kind in ("older", "older2"):
            rows.append((f"old{i}", "j", "judgment", f"old{i}", gen))
            if kind == "older2":  # a newer old version, stored later
                rows.append((f"old{i}b", "j", "judgment", f"oldb{i}", gen))
        elif kind == "legacy":
            rows.append((gen, "j", "judgment", f"leg{i}", ""))
    for r in rows:  # one at a time: "created" orders them
        cache.put_many([r])
    keys = [f"k{i}" for i in range(300)]
    gens = [f"g{i}" for i in range(300)]
    for lo, hi in ((0, 16), (16, 48), (100, 116), (250, 300)):
        found, older = cache.get_with_generations(keys[lo:hi], gens[lo:hi])
        assert found == cache.get_many(keys[lo:hi])
        misses = [g for k, g in zip(keys[lo:hi], gens[lo:hi], strict=True) if k not in found]
        want_older = cache.get_generations(misses)
        assert {g: older[g] for g in misses if g in older} == want_older

    statements: list[str] = []
    with cache._read_lock:  # both connections a lookup may read through
        cache._reader().set_trace_callback(statements.append)
    cache._db().set_trace_callback(statements.append)
    cache.get_with_generations(keys[:16], gens[:16])
    assert len(statements) == 1, statements
    cache.close()


def test_a_streamed_chunk_is_looked_up_in_one_statement(make_comp, cache_path):
    """Each chunk of a streamed compare ran get_many, then get_generations for its misses."""
    cache = JudgmentCache(cache_path)
    judge = CachedJudge(LLMJudge(Counting(), TEMPLATE), cache)
    comps = [make_comp(f"q{i}", f"a{i}", f"b{i}") for i in range(48)]
    cache.get_many(["warm"])
    traces: list[list[str]] = []
    for name in ("_conn", "_read_conn"):  # every connection the cache has open
        conn = getattr(cache, name, None)
        if conn is not None:
            traces.append([])
            conn.set_trace_callback(traces[-1].append)

    async def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, 48, 16):
            yield comps[i : i + 16]

    got = asyncio.run(judge.compare_stream(chunks()))
    assert len(got) == 48 and all(j.winner == "b" for j in got)
    lookups = 0
    for trace in traces:  # reads of judgments outside a transaction (claims and stores)
        in_txn = False
        for sql in trace:
            word = sql.split(None, 1)[0].upper()
            if word == "BEGIN":
                in_txn = True
            elif word in ("COMMIT", "ROLLBACK"):
                in_txn = False
            elif word == "SELECT" and "FROM judgments" in sql and not in_txn:
                lookups += "gen IS NULL" not in sql  # not the once-per-file question
    assert lookups == 3, lookups  # one per chunk; 6 before
    cache.close()
