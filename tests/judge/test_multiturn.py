"""Issue 15, failure 10: MT-Bench's second turn judged as a conversation (pairwise and single
answer, shipped specs), reference answers from a file keyed by question id."""

from __future__ import annotations

import asyncio
import json

import pytest

from judge_rl.data import read_candidates
from judge_rl.errors import DataError
from judge_rl.judge.specs import load_judge
from judge_rl.pipeline.label import apply_references, pair_candidates, read_references
from tests.conftest import DATA, requires_embedded

MT = DATA / "mt_bench"
MOCK = {"backend": "mock", "model": "mock-longer"}


@pytest.fixture(scope="module")
def comps():
    cands = read_candidates(MT / "model_answer")
    return pair_candidates([c for c in cands if c.source in ("gpt-4", "llama-13b")])


def test_issue15_10_pairwise_turn2_shows_both_conversations(comps):
    judge = load_judge("pairwise-mt", overrides=MOCK)
    llm = judge.inner.inner
    c = comps[0]
    req = llm._pair_request(c)
    text = req.messages[-1]["content"]
    q2 = c.a.metadata["question_turns"][1]
    a2, b2 = c.a.metadata["turns"][1], c.b.metadata["turns"][1]
    assert q2[:40] in text and a2[:40] in text and b2[:40] in text
    assert text.index(a2[:40]) < text.index("[Conversation with Assistant B]") < text.index(b2[:40])
    # the mock judge prefers the longer answer: it must be judging the turn-2 answers
    assert req.metadata["judge"]["responses"] == [a2, b2]
    js = asyncio.run(judge.compare(comps[:4]))
    for c, j in zip(comps[:4], js, strict=True):
        la, lb = len(c.a.metadata["turns"][1]), len(c.b.metadata["turns"][1])
        assert j.winner == ("a" if la > lb else "b" if lb > la else "tie"), j.error


def test_issue15_10_single_answer_turn2(comps):
    judge = load_judge("pointwise-mt", overrides=MOCK)
    llm = judge.inner.inner
    cand = comps[0].a
    req = llm._point_request(cand)
    text = req.messages[-1]["content"]
    assert cand.metadata["turns"][1][:40] in text and "turn 2" in text
    js = asyncio.run(judge.compare(comps[:2]))
    assert all(j.ok for j in js)


def test_issue15_10_missing_second_turn_is_an_input_error(comps):
    judge = load_judge("pairwise-mt", overrides=MOCK)
    c = comps[0]
    short = c.model_copy(
        update={"a": c.a.model_copy(update={"metadata": {**c.a.metadata, "turns": ["only one"]}})}
    )
    [j] = asyncio.run(judge.compare([short]))
    assert j.error is not None and j.error.startswith("input:") and "turn 2" in j.error


def test_issue15_10_references_from_a_file(tmp_path, comps):
    fastchat = tmp_path / "gpt-4.jsonl"
    qid = comps[0].prompt_id
    fastchat.write_text(
        json.dumps({"question_id": int(qid), "model_id": "gpt-4",
                    "choices": [{"index": 0, "turns": ["ref one", "ref two"]}]}) + "\n"
    )  # fmt: skip
    refs = read_references(str(fastchat))
    assert refs == {qid: ["ref one", "ref two"]}
    out, matched = apply_references(comps, refs, turn=2)
    assert matched == sum(c.prompt_id == qid for c in comps) >= 1
    hit = next(c for c in out if c.prompt_id == qid)
    assert hit.reference == "ref two" and hit.a.metadata["reference"] == "ref two"
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text('{"id": "q7", "answer": "#### 42"}\n{"prompt_id": 3, "reference": "3"}\n')
    assert read_references(str(gsm)) == {"q7": ["#### 42"], "3": ["3"]}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        read_references(str(bad))


def test_issue15_10_label_references_flag(tmp_path):
    from judge_rl.cli import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"prompt_id": "q1", "prompt": "2+2?", "response_a": "4", "response_b": "5"})
        + "\n"
    )
    refs = tmp_path / "refs.jsonl"
    refs.write_text('{"id": "q1", "reference": "4"}\n')
    spec = tmp_path / "j" / "judge.yaml"
    spec.parent.mkdir()
    spec.write_text(
        'version: "1"\nkind: reference\nbackend: mock\nmodel: m\norder: fixed\n'
        "backend_options: {rule: reference}\n"
        'template: "{{ reference }} {{ response_a }} {{ response_b }}"\n'
    )
    out = tmp_path / "o.jsonl"
    args = ["label", "--judge", str(spec), "--input", str(pairs), "--output", str(out)]
    args += ["--no-cache", "--run", str(tmp_path / "run")]
    from judge_rl.runlog import load

    main(args)  # without references: an input error per comparison
    [j] = load(tmp_path / "run").label.judgments
    assert j.error is not None and j.error.startswith("input:")
    assert main([*args, "--references", str(refs)]) == 0
    row = json.loads(out.read_text().splitlines()[0])
    assert row["chosen"] == "4"


@pytest.mark.slow  # ~4 min on 2 shared cores: four forward passes over 2-4k-token prompts
@requires_embedded
def test_issue15_10_embedded_judge_on_the_mt_bench_sample(tmp_path):
    from judge_rl.cli import main

    out = tmp_path / "o.jsonl"
    rc = main(
        ["label", "--judge", "pairwise-mt-embedded", "--input", str(MT / "model_answer"),
         "--output", str(out), "--limit", "2", "--no-cache", "--no-drop-ties",
         "--run", str(tmp_path / "run")]
    )  # fmt: skip
    assert rc == 0
    from judge_rl.runlog import load

    log = load(tmp_path / "run")
    js = log.label.judgments
    assert len(js) == 2 and all(j.ok for j in js), [j.error for j in js]
    assert all(j.p_a is not None and len(j.calls) == 2 for j in js)
    assert all(c.label_mass is not None for j in js for c in j.calls)
