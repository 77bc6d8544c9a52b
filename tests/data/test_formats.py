"""Every supported format, read from the small fixtures in tests/data (judge_rl/data/_formats.py)."""

from __future__ import annotations

import pytest

from judge_rl.data import (
    FORMATS,
    detect_format,
    read_candidates,
    read_comparisons,
    read_preferences,
    read_prompts,
    split_hh,
    write_candidates,
)
from judge_rl.data._formats import (
    RowError,
    parse_alpaca_preference,
    parse_pair_label,
    parse_thumbs,
    split_implicit_text,
)
from judge_rl.errors import DataError

EXPECTED = {
    "formats/trl_standard.jsonl": ("trl", 3),
    "formats/trl_implicit.jsonl": ("trl-implicit", 2),
    "formats/conversational.jsonl": ("conversational", 2),
    "formats/conversational_implicit.jsonl": ("conversational", 1),
    "formats/pairwise.csv": ("pairwise", 6),
    "formats/pairwise_prob.jsonl": ("pairwise", 3),
    "formats/ranked.jsonl": ("ranked", 4),
    "formats/thumbs.jsonl": ("thumbs", 3),
    "formats/ratings.csv": ("ratings", 3),
    "formats/alpaca_eval.json": ("alpaca-eval", 5),
    "hh_rlhf_sample.jsonl.gz": ("hh-rlhf", 40),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_preference_format_is_detected_and_read(data_dir, name):
    fmt, n = EXPECTED[name]
    assert detect_format(data_dir / name) == fmt
    res = read_preferences(data_dir / name)
    assert res.format == fmt
    assert len(res) == n
    assert not res.skipped
    for r in res:
        assert r.chosen != r.rejected
        assert r.provenance["file"] == name.split("/")[-1]
        assert isinstance(r.provenance["line"], int)
        assert r.prompt_id


def test_every_format_has_a_fixture_or_reader_test():
    covered = {fmt for fmt, _ in EXPECTED.values()} | {
        "mt-bench-answers",
        "mt-bench-questions",
        "gsm8k",
        "prompts",
        "candidates",
    }
    assert covered == set(FORMATS)


def test_trl_standard_extra_columns(data_dir):
    recs = read_preferences(data_dir / "formats/trl_standard.jsonl").records
    assert recs[0].prompt == "What is the capital of France?" and recs[0].chosen == "Paris."
    assert recs[1].provenance["category"] == "math"
    assert recs[2].p_chosen == 0.8 and recs[2].margin == 1.5


def test_trl_implicit_prompt_split_like_trl(data_dir):
    recs = read_preferences(data_dir / "formats/trl_implicit.jsonl").records
    assert (recs[0].prompt, recs[0].chosen, recs[0].rejected) == ("The sky is", " blue.", " green.")
    assert recs[1].prompt == "Water boils at"


def test_conversational(data_dir):
    recs = read_preferences(data_dir / "formats/conversational.jsonl").records
    assert recs[0].prompt == [{"role": "user", "content": "What color is the sky?"}]
    assert recs[0].chosen == [{"role": "assistant", "content": "It is blue."}]
    assert recs[1].prompt[0]["role"] == "system"
    implicit = read_preferences(data_dir / "formats/conversational_implicit.jsonl").records[0]
    assert implicit.prompt == [{"role": "user", "content": "What color is the sky?"}]
    assert implicit.rejected == [{"role": "assistant", "content": "It is green."}]


def test_hh_rlhf_prompt_and_replies_rebuild_the_transcripts(data_dir):
    import gzip
    import json

    with gzip.open(data_dir / "hh_rlhf_sample.jsonl.gz", "rt") as fh:
        raw = [json.loads(x) for x in fh]
    recs = read_preferences(data_dir / "hh_rlhf_sample.jsonl.gz").records
    for row, r in zip(raw, recs, strict=True):
        assert r.prompt.endswith("\n\nAssistant:")
        assert r.prompt + r.chosen == row["chosen"]
        assert r.prompt + r.rejected == row["rejected"]
    earlier = [r for r in recs if r.provenance.get("hh_split") == "differs_earlier"]
    assert len(earlier) == 2  # harmless-base test lines 1255 and 1951 are in the sample
    # the preferred reply may be empty (a non-answer), as in the real data (line 87)
    assert any(not r.chosen.strip() for r in recs)


def test_split_hh_differs_earlier():
    chosen = "\n\nHuman: q\n\nAssistant: A1\n\nAssistant: more"
    rejected = "\n\nHuman: q\n\nAssistant: B1"
    prompt, c, r, earlier = split_hh(chosen, rejected)
    assert prompt == "\n\nHuman: q\n\nAssistant:"
    assert (c, r, earlier) == (" A1\n\nAssistant: more", " B1", True)
    with pytest.raises(RowError):
        split_hh("\n\nHuman: a", "\n\nHuman: b")


def test_pairwise_labels(data_dir):
    recs = read_preferences(data_dir / "formats/pairwise.csv").records
    sides = [r.provenance["chosen_side"] for r in recs]
    assert sides == ["a", "b", "a", "a", "a", "b"]
    assert [r.p_chosen for r in recs] == [1.0, 1.0, 0.5, 0.9, 1.0, 1.0]
    assert recs[1].chosen == "Hola" and recs[1].provenance["source_chosen"] == "m2"
    soft = read_preferences(data_dir / "formats/pairwise_prob.jsonl").records
    assert soft[1].chosen.startswith("Masses") and soft[1].p_chosen == pytest.approx(0.7)
    assert soft[2].is_tie


@pytest.mark.parametrize(
    "value,p_a",
    [
        ("a", 1.0),
        ("B", 0.0),
        ("tie (bothbad)", 0.5),
        (0.25, 0.25),
        (1, 1.0),
        (2, 0.0),
        ("1.5", 0.5),
    ],
)
def test_parse_pair_label(value, p_a):
    assert parse_pair_label(value, "winner") == pytest.approx(p_a)


@pytest.mark.parametrize("value", ["c", 3, -0.1, True, None, [1]])
def test_parse_pair_label_rejects(value):
    with pytest.raises(RowError):
        parse_pair_label(value, "winner")


def test_alpaca_eval(data_dir):
    recs = read_preferences(data_dir / "formats/alpaca_eval.json").records
    assert recs[0].chosen.startswith("1. Eat") and recs[0].provenance["source_chosen"] == "gpt4"
    assert recs[0].provenance["source_rejected"] == "text_davinci_003"
    assert recs[0].provenance["annotator"] == "alpaca_eval_gpt4"
    assert recs[1].chosen == "100 C at sea level."
    assert recs[2].is_tie and recs[4].is_tie  # 1.5 and 0 (AlpacaEval's draw)
    assert recs[3].p_chosen == pytest.approx(0.8) and recs[3].chosen == "Mars"
    assert all(r.origin == "judge" for r in recs)
    assert parse_alpaca_preference(2, "preference") == 1.0
    with pytest.raises(RowError):
        parse_alpaca_preference(3, "preference")


def test_ranked_gives_all_pairs_best_first(data_dir):
    recs = read_preferences(data_dir / "formats/ranked.jsonl").records
    haiku = [r for r in recs if "haiku" in r.prompt]
    assert len(haiku) == 3  # K(K-1)/2 with K = 3
    assert [(r.provenance["rank_chosen"], r.provenance["rank_rejected"]) for r in haiku] == [
        (0, 1),
        (0, 2),
        (1, 2),
    ]
    assert recs[-1].provenance["source_chosen"] == "good-model"


def test_thumbs_pairs_within_a_prompt(data_dir):
    recs = read_preferences(data_dir / "formats/thumbs.jsonl").records
    joke = [r for r in recs if r.prompt == "Tell me a joke."]
    assert len(joke) == 2 and all(r.chosen.startswith("Why did") for r in joke)
    # TRL's unpaired (KTO) columns: completion + boolean label
    assert any(r.chosen == "A cat sat on a mat." for r in recs)
    assert all(r.origin == "rating" for r in recs)
    assert parse_thumbs("👍", "thumbs") == 1 and parse_thumbs("bad", "thumbs") == 0


def test_ratings_pairs_with_margin(data_dir):
    recs = read_preferences(data_dir / "formats/ratings.csv").records
    assert sorted(r.margin for r in recs) == [3.0, 5.0, 8.0]
    assert all(r.prompt_id == "q1" for r in recs)  # equal ratings (q2) give no pair


def test_split_implicit_text_backs_off_to_a_word():
    assert split_implicit_text("Yes, sure", "Yes, no") == ("Yes,", " sure", " no")


def test_mt_bench_answers_with_questions_found_beside(data_dir):
    cands = read_candidates(data_dir / "mt_bench/model_answer")
    assert len(cands) == 40
    assert {c.source for c in cands} == {"gpt-4", "gpt-3.5-turbo", "vicuna-13b-v1.3", "llama-13b"}
    c = next(c for c in cands if c.prompt_id == "81" and c.source == "gpt-4")
    assert c.prompt.startswith("Compose an engaging travel blog post")
    assert c.metadata["category"] == "writing" and len(c.metadata["turns"]) == 2
    assert c.response == c.metadata["turns"][0]
    ref = next(c for c in cands if c.prompt_id == "111")
    assert ref.metadata["category"] == "math" and ref.metadata.get("reference")


def test_mt_bench_answers_without_questions(data_dir, tmp_path):
    import shutil

    f = tmp_path / "gpt-4.jsonl"
    shutil.copy(data_dir / "mt_bench/model_answer/gpt-4.jsonl", f)
    cands = read_candidates(f)
    assert len(cands) == 10 and all(c.prompt == "" for c in cands)
    assert cands[0].metadata["question_id"] == 81
    write_candidates(cands, tmp_path / "c.jsonl")
    assert read_candidates(tmp_path / "c.jsonl") == cands
    with_q = read_candidates(f, questions=data_dir / "mt_bench/question.jsonl")
    assert with_q[0].prompt.startswith("Compose")


def test_mt_bench_questions_and_gsm8k_prompts(data_dir):
    qs = read_prompts(data_dir / "mt_bench/question.jsonl")
    assert len(qs) == 10 and qs[0].prompt_id == "81" and qs[0].category == "writing"
    assert len(qs[0].metadata["turns"]) == 2
    assert any(q.reference for q in qs if q.category == "math")
    g = read_prompts(data_dir / "gsm8k_sample.jsonl")
    assert len(g) == 20 and all(p.reference and "####" not in p.reference for p in g)
    assert all("," not in p.reference for p in g)
    assert "####" in g[0].metadata["solution"]


def test_generic_prompts_and_candidates(data_dir):
    ps = read_prompts(data_dir / "formats/prompts.csv")
    assert [p.prompt_id for p in ps] == ["p1", "p2"] and ps[0].reference == "42"
    assert ps[1].reference is None
    cands = read_candidates(data_dir / "formats/candidates.jsonl")
    assert [c.source for c in cands] == ["model-a", "model-b"]
    assert cands[0].metadata["reference"] == "4"


def test_builtin_prompt_sets():
    g = read_prompts("builtin:gsm8k-demo")
    assert len(g) == 60 and g[0].reference == "18" and g[0].category == "math"
    o = read_prompts("builtin:open-demo")
    assert len(o) == 40
    assert {p.category for p in o} == {"writing", "roleplay", "extraction", "stem", "humanities"}
    with pytest.raises(DataError, match="unknown built-in"):
        read_prompts("builtin:nope")


def test_wrong_kind_is_a_clear_error(data_dir):
    with pytest.raises(DataError, match="mt-bench-answers"):
        read_preferences(data_dir / "mt_bench/model_answer/gpt-4.jsonl")
    with pytest.raises(DataError, match="preferences"):
        read_prompts(data_dir / "formats/trl_standard.jsonl")


def test_comparisons_from_pairwise_keep_sides_and_label(data_dir):
    comps = read_comparisons(data_dir / "formats/pairwise.csv")
    assert [c.metadata["human"] for c in comps] == ["a", "b", "tie", "a", "a", "b"]
    assert comps[3].metadata["human_p_a"] == 0.9
    assert comps[0].a.response == "56" and comps[0].a.source == "m1"
    unl = read_comparisons(data_dir / "formats/pairwise_unlabelled.jsonl")
    assert len(unl) == 2 and "human" not in unl[0].metadata
    with pytest.raises(DataError, match="missing label"):
        read_preferences(data_dir / "formats/pairwise_unlabelled.jsonl")


def test_records_to_comparisons_randomises_sides_and_keeps_label(data_dir):
    recs = read_preferences(data_dir / "hh_rlhf_sample.jsonl.gz").records
    comps = read_comparisons(data_dir / "hh_rlhf_sample.jsonl.gz", seed=1)
    assert len(comps) == len(recs)
    firsts = [c.metadata["human"] for c in comps]
    assert 5 < firsts.count("a") < 35  # both sides occur
    for r, c in zip(recs, comps, strict=True):
        winner = c.a if c.metadata["human"] == "a" else c.b
        assert winner.response == r.chosen
        assert c.metadata["human_p_a"] == (1.0 if c.metadata["human"] == "a" else 0.0)
    again = read_comparisons(data_dir / "hh_rlhf_sample.jsonl.gz", seed=1)
    assert [c.id for c in again] == [c.id for c in comps]
