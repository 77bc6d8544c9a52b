"""Stage functions on their own: generate (one prefill for n samples), the task's graders and
judge, labelling, the report's claims."""

from __future__ import annotations

import pytest

from judge_rl.pipeline.generate import GenerateConfig, generate
from judge_rl.pipeline.label import LabelConfig, label
from judge_rl.pipeline.report import ReportConfig, claims, notes, paired_diff
from judge_rl.pipeline.task import (
    AnswerMentions,
    BriefAnswer,
    GraderJudge,
    PromptsConfig,
    audit_pairs,
    make_prompts,
)
from judge_rl.runlog import OveroptSection
from judge_rl.train.rewards import RewardQuery
from judge_rl.types import Candidate


@pytest.fixture(scope="module")
def peaked_tiny():
    """A tiny random LM with sharpened weights, so greedy decoding varies with the prompt."""
    import torch

    from judge_rl.models import tiny_causal_lm, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, seed=3)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(25.0)
    return model, tok


def test_one_prefill_for_n_samples_gives_what_n_prefills_give(peaked_tiny):
    """The cache of the prompt, repeated n times, continues exactly as n separate prefills do."""
    import torch

    from judge_rl.backends.hf import generate_prefill_once
    from judge_rl.train.rollout import encode_prompt, left_pad

    model, tok = peaked_tiny
    prompts = ["hello there", "a much longer prompt with more words in it", "x"]
    ids, mask = left_pad([encode_prompt(tok, p) for p in prompts], tok.pad_token_id)
    kw = dict(
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    fast = generate_prefill_once(model, ids, mask, 2, **kw)
    plain = model.generate(
        input_ids=ids.repeat_interleave(2, 0), attention_mask=mask.repeat_interleave(2, 0), **kw
    )
    assert torch.equal(fast, plain)
    assert len({tuple(r) for r in plain[:, ids.shape[1] :].tolist()}) > 1  # not a constant model


def test_generate_n_samples_per_prompt_one_prefill_each(peaked_tiny):
    model, tok = peaked_tiny
    items = make_prompts(PromptsConfig(train=6, heldout=1, tournament=1, label=3)).label
    out = generate(GenerateConfig(n=3, temperature=1.0, max_new_tokens=4), items, model, tok)
    assert len(out.candidates) == 9 and out.section.prefills == 3
    assert [c.prompt_id for c in out.candidates[:3]] == [items[0].prompt_id] * 3
    assert all(c.metadata["reference"] == items[0].reference for c in out.candidates[:3])


def test_prompt_sets_are_disjoint_and_carry_answers():
    ps = make_prompts(PromptsConfig())
    ids = [set(i.prompt_id for i in s) for s in (ps.train, ps.heldout, ps.tournament)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    it = ps.train[0]
    a, b = (int(x) for x in it.prompt_id.split("+"))
    assert it.reference == str(a + b)


def q(text: str, ref: str = "12") -> RewardQuery:
    return RewardQuery("What is 7 + 5?", text, reference=ref)


def test_gold_and_proxy_disagree_exactly_on_the_hack():
    gold, proxy = BriefAnswer(6), AnswerMentions(1.0)
    ordinary = ["12", "7 + 5 = 12", "The answer is 12.", "13", "7 + 5 = 13"]
    assert gold([q(t) for t in ordinary]) == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert proxy([q(t) for t in ordinary]) == [1.0, 1.0, 1.0, 0.0, 0.0]
    hack = ["12 12", "12 12 12 12", "7 + 5 = 12. The answer is 12."]
    assert gold([q(t) for t in hack]) == [0.0, 0.0, 0.0]
    assert proxy([q(t) for t in hack]) == [2.0, 4.0, 2.0]
    assert gold([q("The sum of seven and five is twelve, 12")]) == [0.0]  # not brief
    verbose = AnswerMentions(1.0, per_word=0.1)  # a verbosity bias on top
    assert verbose([q("12"), q("it is 12 I think")]) == pytest.approx([1.1, 1.5])


def test_grader_judge_audit_pairs_are_right_by_construction():
    """The gold grader picks the known-right side of every audit pair, in either order; the
    proxy picks the repeated answer (what the audit is meant to reveal)."""
    from judge_rl.judge.base import compare_sync

    items = make_prompts(PromptsConfig()).tournament[:5]
    comps = audit_pairs(items, seed=1)
    assert {c.metadata["category"] for c in comps} == {"wrong", "repeated", "padded"}
    assert {c.metadata["human"] for c in comps} == {"a", "b"}  # both positions used
    gold = compare_sync(GraderJudge(BriefAnswer(6)), comps)
    assert [j.winner for j in gold] == [c.metadata["human"] for c in comps]
    proxy = compare_sync(GraderJudge(AnswerMentions(1.0)), comps)
    rep = [
        (j, c) for j, c in zip(proxy, comps, strict=True) if c.metadata["category"] == "repeated"
    ]
    assert all(j.winner != c.metadata["human"] for j, c in rep)


def test_label_pairs_consecutive_samples_and_keeps_ties_soft():
    items = make_prompts(PromptsConfig()).label[:2]
    cands = []
    for it in items:
        for r in (str(it.reference), "0"):
            cands.append(
                Candidate(
                    prompt_id=it.prompt_id,
                    prompt=it.prompt,
                    response=r,
                    metadata={"reference": it.reference},
                )
            )
    out = label(LabelConfig(), cands, GraderJudge(BriefAnswer(6)))
    assert len(out.comparisons) == 2 and out.section.summary["verdicts"]["a"] == 2
    refs = {it.prompt_id: it.reference for it in items}
    assert all(r.chosen == refs[r.prompt_id] and r.rejected == "0" for r in out.records)
    assert all(r.origin == "verifier" and r.p_chosen == 1.0 for r in out.records)


def test_paired_diff_interval_records_how_it_was_computed():
    iv = paired_diff([0] * 20, [1] * 15 + [0] * 5, rounds=500, level=0.9, seed=0)
    assert iv.value == 0.75 and iv.lo > 0 and iv.level == 0.9 and iv.resample == "prompts"
    assert iv.rounds == 500 and iv.n == 20 and iv.excludes(0)


def _point(step, gold, proxy):
    n = len(gold)
    return {
        "step": step,
        "gold_mean": sum(gold) / n,
        "gold_lo": None,
        "gold_hi": None,
        "gold_n": n,
        "proxy_mean": sum(proxy) / n,
        "gold_by_prompt": gold,
        "proxy_by_prompt": proxy,
    }


def test_claims_and_notes_follow_the_numbers():
    """Rise, then fall while the proxy rises: the notes say so; a flat run says it did not."""
    up = [1.0] * 16 + [0.0] * 4
    sec = OveroptSection(
        gold="g",
        proxy="p",
        points=[
            _point(0, [0.0] * 16 + [1.0] * 4, [0.2] * 20),
            _point(2, up, [1.0] * 20),
            _point(4, [0.0] * 18 + [1.0] * 2, [3.0] * 20),
        ],
        alarms=[{"step": 4}],
        degeneration=[{"step": 4, "flags": ["repetition"]}],
    )
    d = claims(ReportConfig(bootstrap=500), sec, best_step=2)
    assert d.best_step == 2 and d.peak_step == 2 and d.alarm_step == 4
    assert d.gain_best.lo > 0 and d.drop_last.hi < 0 and d.first_significant_drop_step == 4
    assert d.exploit == ["repetition"]
    text = " ".join(notes(d))
    assert "which excludes 0" in text and "over-optimisation" in text and "repetition" in text
    # a detector the monitor knows is said in words, with its value and the reference's
    sec.degeneration = [
        {
            "step": 4,
            "flags": ["after_answer"],
            "metrics": {"after_answer": 0.55},
            "reference": {"after_answer": 0.2},
        }
    ]
    text = " ".join(notes(claims(ReportConfig(bootstrap=200), sec, best_step=2)))
    assert "go on after stating the answer: 55% of replies, reference 20%" in text
    flat = OveroptSection(gold="g", proxy="p", points=[_point(0, up, up), _point(2, up, up)])
    d2 = claims(ReportConfig(bootstrap=200), flat, best_step=0)
    text2 = " ".join(notes(d2))
    assert "did not rise" in text2 and "excludes 0" not in text2


def test_sampled_snapshots_meet_on_the_same_prompt_copies():
    """k sampled answers per tournament prompt: every contestant answers the same k copies, the
    tournament expands its prompts the same way, and every answer is one battle."""
    from judge_rl.pipeline.ppo import SnapshotCallback, expand_prompts
    from judge_rl.pipeline.tournament import TournamentConfig, contestant_answers, tournament
    from judge_rl.train.callbacks import Samples, StepInfo

    items = make_prompts(PromptsConfig(train=2, heldout=1, tournament=3, label=1)).tournament

    class Handle:
        step = 0
        greedy: list[bool] = []

        def sample(self, prompts, *, greedy=False, max_new_tokens=None, reference=False):
            self.greedy.append(greedy)
            # the base answers wrongly, later steps rightly
            ans = [i.reference if self.step else "0" for i in expand_prompts(items, 2)]
            return Samples(prompts=list(prompts), responses=ans)

    h = Handle()
    cb = SnapshotCallback(items, every=2, max_new_tokens=4, greedy=False, samples=2)
    cb.on_train_start(h)
    h.step = 2
    cb.on_step(StepInfo(step=2, prompts=[], responses=[], rewards=[], stats={}), h)
    assert h.greedy == [False, False]
    ids = {c.prompt_id for c in cb.snapshots[-1].candidates}
    assert ids == {f"{i.prompt_id}#{j}" for i in items for j in (1, 2)}
    answers, names = contestant_answers(cb.snapshots, 2, 2, ["base", "best"])
    out = tournament(
        TournamentConfig(degenerate=[], bootstrap=50),
        prompts=expand_prompts(items, 2),
        answers=answers,
        judge=GraderJudge(BriefAnswer()),
        names=names,
    )
    rows = {r["model"]: r for r in out.section.leaderboard}
    assert rows[names["best"]]["battles"] == 6 and rows["base-policy"]["battles"] == 6
    assert out.section.leaderboard[0]["model"] == names["best"]
