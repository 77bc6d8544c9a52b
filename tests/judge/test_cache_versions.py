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
