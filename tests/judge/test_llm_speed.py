"""Per-judgment work of the judging path (issue 19 item 2): what ``judge-rl label`` does for
each comparison happens once, not once for the estimate and again for the judging."""

from __future__ import annotations

import asyncio

from judge_rl import _io
from judge_rl.backends.mock import MockBackend
from judge_rl.judge import LLMJudge, estimate
from judge_rl.judge.budget import prompt_token_bound
from judge_rl.judge.cache import CachedJudge, compare_key


class _CountingTemplate:
    def __init__(self, inner):
        self.inner, self.renders = inner, 0

    def render(self, **kw):
        self.renders += 1
        return self.inner.render(**kw)


def test_estimate_then_compare_renders_each_comparison_once(comparisons, pairwise_template):
    judge = LLMJudge(MockBackend(rule="longer"), pairwise_template, name="t")
    counting = judge.template = _CountingTemplate(judge.template)
    est = judge.estimate(comparisons)
    out = asyncio.run(judge.compare(comparisons))
    assert est.calls == len(comparisons) and all(j.ok for j in out)
    assert counting.renders == len(comparisons)
    # the same requests as without the estimate: identical verdicts and raw outputs
    fresh = LLMJudge(MockBackend(rule="longer"), pairwise_template, name="t")
    again = asyncio.run(fresh.compare(comparisons))
    assert [(j.winner, j.calls[0].raw) for j in out] == [(j.winner, j.calls[0].raw) for j in again]
    # a comparison the estimate did not see is rendered as usual
    other = comparisons[0].model_copy(update={"prompt": "something else"})
    asyncio.run(judge.compare([other]))
    assert counting.renders == len(comparisons) + 1


def test_estimate_then_compare_hashes_each_cache_key_once(
    comparisons, pairwise_template, monkeypatch
):
    judge = CachedJudge(LLMJudge(MockBackend(rule="longer"), pairwise_template, name="t"), None)
    calls = {"n": 0}
    real = _io.content_hash

    def counting(obj, n=16):
        calls["n"] += 1
        return real(obj, n)

    monkeypatch.setattr("judge_rl.judge.cache.content_hash", counting)
    estimate(judge, comparisons)
    asyncio.run(judge.compare(comparisons))
    # a generation key and a key per comparison, plus the fingerprint's key once
    assert calls["n"] <= 2 * len(comparisons) + 2
    fp = judge.fingerprint
    monkeypatch.undo()
    assert judge._estimated[id(comparisons[0])][1] == compare_key(fp, comparisons[0])


def test_prompt_token_bound_counts_non_ascii_as_before():
    def slow(text: str) -> int:
        other = sum(1 for ch in text if ord(ch) > 127)
        return max(1, (len(text) - other + 3) // 4 + other)

    for text in ["", "a" * 401, "答" * 7 + "abc", "héllo wörld 😀", "x\udcff y", "\x7f\x80"]:
        assert prompt_token_bound(text) == slow(text)


def test_spec_is_parsed_and_its_template_compiled_once_per_process(tmp_path, monkeypatch):
    """``judge-rl label`` validates the spec, then builds the judge: the YAML is parsed and
    the template compiled once, not five and three times."""
    import judge_rl._io
    import judge_rl.judge.llm as llm
    from judge_rl.judge.specs import load_judge, read_spec, validate_spec

    folder = tmp_path / "j"
    folder.mkdir()
    (folder / "prompt.j2").write_text(
        "Q {{ prompt }} A {{ response_a }} B {{ response_b }} [[A]] [[B]] [[C]] t1"
    )
    spec = folder / "judge.yaml"
    spec.write_text("version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n")
    loads, compiles = [], []
    real_load, real_compile = judge_rl._io.safe_yaml_load, llm._compile_template
    monkeypatch.setattr(
        judge_rl._io, "safe_yaml_load", lambda *a, **k: loads.append(1) or real_load(*a, **k)
    )
    monkeypatch.setattr(
        llm, "_compile_template", lambda *a, **k: compiles.append(1) or real_compile(*a, **k)
    )
    validate_spec(spec)
    validate_spec(spec)
    load_judge(spec, cache=None)
    assert (len(loads), len(compiles)) == (1, 1)
    # every caller gets its own copy; a changed file (even of the same size) is read again
    read_spec(spec)["model"] = "changed"
    assert read_spec(spec)["model"] == "m"
    spec.write_text("version: 2\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n")
    assert read_spec(spec)["version"] == "2" and len(loads) == 2


def _code_file(task: asyncio.Task) -> str:
    code = getattr(task.get_coro(), "cr_code", None)
    return code.co_filename.replace("\\", "/") if code is not None else ""


def test_chunks_go_to_a_fixed_pool_of_workers_in_order(make_comp):
    """The cache layer hands chunks to ``max_in_flight`` workers: no task (and semaphore wait)
    per comparison, still in input order and never more in flight."""
    from judge_rl.types import Judgment

    comps = [make_comp(f"a{i}", f"b{i}", prompt=f"p{i}", i=i) for i in range(300)]
    inner = LLMJudge(MockBackend(rule="longer"), "{{ prompt }} {{ response_a }} {{ response_b }}")
    seen: list[str] = []
    peak = {"tasks": 0, "in_flight": 0, "now": 0}
    real = inner.compare

    async def spy(chunk):
        seen.extend(c.id for c in chunk)
        peak["now"] += 1
        peak["in_flight"] = max(peak["in_flight"], peak["now"])
        # tasks of the cache layer only (the mock backend's gather makes its own, transient ones)
        mine = [t for t in asyncio.all_tasks() if _code_file(t).endswith("judge/cache.py")]
        peak["tasks"] = max(peak["tasks"], len(mine))
        await asyncio.sleep(0.001)
        try:
            return await real(chunk)
        finally:
            peak["now"] -= 1

    inner.compare = spy
    inner.max_in_flight = 8
    out: list[Judgment] = asyncio.run(CachedJudge(inner, None).compare(comps))
    assert [j.comparison_id for j in out] == [c.id for c in comps] and all(j.ok for j in out)
    assert seen == [c.id for c in comps]  # taken in order
    assert peak["in_flight"] == 8 and peak["tasks"] == 8 + 1  # workers + compare, none per chunk


class _Raising:
    name, model = "openai", "m"

    async def chat(self, requests):
        raise RuntimeError("transport broke")

    async def aclose(self):
        pass


def test_a_failed_call_gives_its_reservation_back(make_comp):
    """One comparison is sent inside ``compare`` (no ``_send``), many through ``_send``: either
    way a backend that raises leaves nothing reserved and nothing charged."""
    import pytest

    from judge_rl.judge.budget import Budget

    comps = [make_comp(f"a{i}", f"b{i}", prompt=f"p{i}", i=i) for i in range(3)]
    for chunk in (comps[:1], comps):
        budget = Budget(max_cost=1.0)
        judge = LLMJudge(
            _Raising(),
            "{{ prompt }} {{ response_a }} {{ response_b }}",
            prices={"input": 1.0, "output": 1.0},
            budget=budget,
        )
        with pytest.raises(RuntimeError, match="transport broke"):
            asyncio.run(judge.compare(chunk))
        assert budget._reserved_calls == 0 and budget._reserved_cost == pytest.approx(0.0)
        assert budget.calls == 0 and budget.cost == 0.0
