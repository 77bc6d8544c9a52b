"""The embedded SmolLM2-135M-Instruct judging real comparisons end to end (hf backend)."""

from __future__ import annotations

import json

import pytest

from judge_rl.judge import JudgmentCache, OrderedJudge, compare_sync, score_sync
from judge_rl.judge.specs import build_judge, find_spec, read_spec
from judge_rl.types import Candidate

PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris.", "I like turtles."),
    ("How many legs does a spider have?", "Spiders have eight legs.", "Spiders have three legs."),
    ("Translate 'thank you' into Spanish.", "Gracias.", "Bonjour."),
]


def _backend_pool(embedded):
    """A backend pool pre-filled with the session's embedded model (loaded once for all tests)."""
    from judge_rl._io import canonical_json
    from judge_rl.backends.hf import HFBackend

    model, tok = embedded
    backend = HFBackend(model_object=model, tokenizer=tok, batch_size=8)
    backend.model = "embedded"
    return {canonical_json(["hf", {"model": "embedded"}]): backend}


def _comparisons(make_comp):
    return [make_comp(a, b, prompt=q, i=i) for i, (q, a, b) in enumerate(PAIRS)]


def test_pairwise_embedded_gives_probabilities(embedded, make_comp, tmp_path):
    path = find_spec("pairwise-embedded")
    cache = JudgmentCache(tmp_path / "c.sqlite")
    judge = build_judge(read_spec(path), path, cache=cache, pool=_backend_pool(embedded))
    assert isinstance(judge, OrderedJudge) and judge.order == "both"
    comps = _comparisons(make_comp)[:2]  # CPU time: 4 forward rows
    js = compare_sync(judge, comps)
    for j, c in zip(js, comps, strict=True):
        assert j.ok, j.error
        assert j.judge.backend == "hf" and j.judge.model == "embedded"
        assert [call.first_id for call in j.calls] == [c.a.id, c.b.id]
        assert all(call.p_a is not None and 0.0 < call.p_a < 1.0 for call in j.calls)
        assert 0.0 < j.p_a < 1.0 and j.consistent is not None
    assert len(cache) == 2 * len(comps)
    again = compare_sync(judge, comps)
    assert [j.p_a for j in again] == pytest.approx([j.p_a for j in js])
    assert all(call.cached for j in again for call in j.calls)


@pytest.mark.parametrize(
    "name", ["pointwise-embedded", pytest.param("rubric-hh-embedded", marks=pytest.mark.slow)]
)
def test_pointwise_and_rubric_embedded_score(embedded, name):
    cands = [Candidate(prompt_id="q", prompt=PAIRS[0][0], response=PAIRS[0][1])]
    path = find_spec(name)
    judge = build_judge(read_spec(path), path, pool=_backend_pool(embedded))
    (s,) = score_sync(judge, cands)
    assert s.ok, s.error
    lo, hi = (1, 5) if name == "pointwise-embedded" else (0, 10)
    assert lo <= s.score <= hi
    if name == "rubric-hh-embedded":
        assert set(s.criteria) == {
            "answers_request",
            "wrong_facts",
            "refuses_harmless",
            "harmful_content",
        }
        assert all(0.0 <= v <= 1.0 for v in s.criteria.values())


@pytest.mark.slow
def test_label_cli_with_embedded_judge(cli, tmp_path):
    """The real command, loading the embedded model itself (slow: a fresh process)."""
    inp = tmp_path / "pairs.jsonl"
    inp.write_text(
        "".join(
            json.dumps({"prompt": q, "response_a": a, "response_b": b}) + "\n" for q, a, b in PAIRS
        )
    )
    out = tmp_path / "prefs.jsonl"
    r = cli(
        "label",
        "--judge",
        "pairwise-embedded",
        "--input",
        str(inp),
        "--output",
        str(out),
        "--no-cache",
        "--run",
        str(tmp_path / "run"),
    )
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) == len(PAIRS)
