"""Jury aggregation and the human-file judge."""

from __future__ import annotations

import json

import pytest

from judge_rl.backends.mock import MockBackend
from judge_rl.judge import HumanFileJudge, Jury, LLMJudge, OrderedJudge, compare_sync, load_judge
from judge_rl.types import PreferenceRecord


def member(rule, template, **kw):
    return OrderedJudge(
        LLMJudge(MockBackend(rule=rule, **kw), template, name=rule, label_probs=True), "fixed"
    )


def test_majority_keeps_every_member(comparisons, pairwise_template):
    jury = Jury([member(r, pairwise_template) for r in ("longer", "longer", "shorter")], name="j")
    js = compare_sync(jury, comparisons)
    assert [j.winner for j in js] == ["a", "a", "a", "b", "b", "b"]
    for j in js:
        assert len(j.members) == 3 and j.judge.kind == "jury"
        assert [m.judge.name for m in j.members] == ["longer", "longer", "shorter"]
    assert js[0].p_a == pytest.approx(2 / 3)


def test_majority_split_is_a_tie_and_mean_uses_probabilities(comparisons, pairwise_template):
    split = Jury([member("longer", pairwise_template), member("shorter", pairwise_template)])
    assert {j.winner for j in compare_sync(split, comparisons)} == {"tie"}
    mean = Jury(
        [
            member("longer", pairwise_template, confidence=0.9),
            member("shorter", pairwise_template, confidence=0.6),
        ],
        aggregate="mean",
    )
    # longer: P(a)=0.9+0.05/2 on pair 0; shorter: P(a)=0.2+0.2/2 -> mean > 0.5: the confident one wins
    (j,) = compare_sync(mean, comparisons[:1])
    assert j.winner == "a" and j.p_a == pytest.approx((0.925 + 0.3) / 2)


def test_failed_members_are_skipped_then_quorum(comparisons, pairwise_template):
    broken = OrderedJudge(
        LLMJudge(MockBackend(faults={"server": 1.0}), pairwise_template, name="broken"), "fixed"
    )
    jury = Jury([member("longer", pairwise_template), broken])
    js = compare_sync(jury, comparisons)
    assert all(j.ok for j in js) and all(j.members[1].error_kind == "server" for j in js)
    strict = Jury([member("longer", pairwise_template), broken], quorum=2)
    assert all(
        j.error_kind == "jury" and j.winner is None for j in compare_sync(strict, comparisons)
    )


def test_jury_spec_loads_members(write_spec, make_comp):
    tmpl = "{{ response_a }} / {{ response_b }}"
    write_spec(
        "m1",
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: a\ntemplate: prompt.j2\n",
        template=tmpl,
    )
    write_spec(
        "m2",
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: b\ntemplate: prompt.j2\n"
        "backend_options: {rule: shorter}\n",
        template=tmpl,
    )
    write_spec("m3", "version: 1\nkind: verifier\nmode: exact\n", template=None)
    jpath = write_spec(
        "jj", "version: 2\nkind: jury\nmembers: [../m1, ../m2, ../m3]\norder: both\n", template=None
    )
    jury = load_judge(jpath)
    assert isinstance(jury, Jury) and jury.fingerprint.version == "2"
    (j,) = compare_sync(jury, [make_comp("forty-two", "42", reference="42")])
    assert [m.judge.name for m in j.members] == ["m1", "m2", "m3"]
    assert [m.winner for m in j.members] == ["a", "b", "b"] and j.winner == "b"
    assert j.members[0].order == "both"


def test_human_file_judge_matches_by_content(tmp_path, comparisons):
    c0, c1, c2 = comparisons[:3]
    path = tmp_path / "prefs.jsonl"
    rows = [
        {"prompt": c0.prompt, "chosen": c0.b.response, "rejected": c0.a.response},
        {"prompt": c1.prompt, "chosen": c1.a.response, "rejected": c1.b.response},
        {
            "prompt": c1.prompt,
            "chosen": c1.b.response,
            "rejected": c1.a.response,
        },  # second annotator
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    judge = HumanFileJudge(path)
    j0, j1, j2 = compare_sync(judge, [c0, c1, c2])
    assert j0.winner == "b" and j0.p_a == 0.0
    assert j1.winner == "tie" and j1.p_a == pytest.approx(0.5)
    assert j2.winner is None and j2.error_kind == "input"
    c2h = c2.model_copy(update={"metadata": {"human": "a"}})
    (j,) = compare_sync(judge, [c2h])
    assert j.winner == "a"
    with pytest.raises(NotImplementedError):
        import asyncio

        asyncio.run(judge.score([c0.a]))


def test_human_records_in_memory(comparisons):
    c = comparisons[0]
    rec = PreferenceRecord(
        prompt=c.prompt, chosen=c.a.response, rejected=c.b.response, p_chosen=0.8
    )
    (j,) = compare_sync(HumanFileJudge(records=[rec]), [c])
    assert j.winner == "a" and j.p_a == pytest.approx(0.8) and j.judge.kind == "human"
