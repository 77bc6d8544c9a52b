"""One label path (issue 13 item 1): ``judge-rl label`` and the pipeline's ``label`` stage share
pairing, judging and record-making (:mod:`judge_rl.pipeline.label`); the run-log section's summary
is a typed record; argparse lives in ``judge_rl/commands`` only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import judge_rl
from judge_rl.data import read_preferences, write_candidates
from judge_rl.judge.specs import load_judge
from judge_rl.types import Candidate

PKG = Path(judge_rl.__file__).parent


def _cands() -> list[Candidate]:
    """Three prompts, four sources each; one duplicate answer, one prompt without ``base``."""
    out = []
    answers = {
        "p0": ["4", "The answer is 4.", "four", "4"],
        "p1": ["Lima", "It is Lima, the capital.", "Cusco", "Lima is the capital of Peru."],
        "p2": ["hi", "hello there", "yo", "greetings, friend"],
    }
    for pid, texts in answers.items():
        for k, t in enumerate(texts):
            src = ["base", "m1", "m2", "m3"][k]
            if pid == "p2" and src == "base":
                src = "m0"
            out.append(Candidate(prompt_id=pid, prompt=f"question {pid}", response=t, source=src))
    return out


def _record_rows(records) -> list[tuple]:
    return [
        (
            r.prompt_id,
            r.chosen,
            r.rejected,
            r.p_chosen,
            r.origin,
            json.dumps(
                {k: v for k, v in r.provenance.items() if k not in ("file", "line", "format")},
                sort_keys=True,
            ),
        )
        for r in records
    ]


@pytest.mark.parametrize("baseline", [None, "base"])
def test_command_and_pipeline_stage_give_the_same_records(tmp_path, capsys, baseline):
    from judge_rl.cli import main
    from judge_rl.pipeline.label import LabelConfig, label

    cands = _cands()
    inp = write_candidates(cands, tmp_path / "cands.jsonl")
    out = tmp_path / "prefs.jsonl"
    args = ["label", "--judge", "mock-pairwise", "--input", str(inp), "--output", str(out)]
    args += ["--no-cache", "--no-drop-ties", "--seed", "3", "--run", str(tmp_path / "run")]
    if baseline:
        args += ["--baseline", baseline]
    assert main(args) == 0
    capsys.readouterr()
    cfg = LabelConfig(
        judge="mock-pairwise",
        pairing="baseline" if baseline else "all",
        baseline=baseline,
        seed=3,
    )
    lib = label(cfg, cands, load_judge("mock-pairwise", cache=None))
    from_file = read_preferences(out).records
    assert len(lib.records) == len(from_file) == (5 if baseline else 17)
    assert _record_rows(lib.records) == _record_rows(from_file)
    assert lib.section.summary["written"] == len(lib.records)


def test_pairing_rules_consecutive_is_the_pipeline_default():
    from judge_rl.pipeline.label import LabelConfig, pair_candidates

    assert LabelConfig().pairing == "consecutive"
    cands = _cands()
    # consecutive: samples 0/1 (then 2/3) of each prompt in input order, the earlier one as a;
    # the duplicate answer of p0 is kept (the demo's pairs, unchanged)
    one = pair_candidates(cands, pairing="consecutive")
    assert [(c.prompt_id, c.a.response, c.b.response) for c in one] == [
        ("p0", "4", "The answer is 4."),
        ("p1", "Lima", "It is Lima, the capital."),
        ("p2", "hi", "hello there"),
    ]
    two = pair_candidates(cands, pairing="consecutive", per_prompt=2)
    assert [(c.a.response, c.b.response) for c in two if c.prompt_id == "p0"] == [
        ("4", "The answer is 4."),
        ("four", "4"),
    ]
    # all: every pair of distinct answers within a prompt (p0: 6 pairs less the identical one)
    allp = pair_candidates(cands, pairing="all", seed=0)
    assert len(allp) == 5 + 6 + 6
    pairs = {frozenset((c.a.id, c.b.id)) for c in allp}
    assert len(pairs) == len(allp) and all(c.a.response != c.b.response for c in allp)
    assert any(c.a.source > c.b.source for c in allp)  # a seeded coin flip, not input order
    assert pair_candidates(cands, pairing="all", seed=0) == allp  # same seed, same sides
    # baseline: each other candidate vs the base answer; p2 has no base candidate
    base = pair_candidates(cands, baseline="base")
    assert {c.prompt_id for c in base} == {"p0", "p1"}
    assert all("base" in (c.a.source, c.b.source) for c in base)
    assert len(base) == 2 + 3  # p0's m3 answers "4" as base does: no comparison


def test_pipeline_stage_pairs_consecutively_and_records_carry_provenance():
    from judge_rl.pipeline.label import LabelConfig, label
    from judge_rl.runlog import LabelSummary

    cands = _cands()
    out = label(LabelConfig(judge="mock-pairwise"), cands, load_judge("mock-pairwise", cache=None))
    assert [(c.a.response, c.b.response) for c in out.comparisons][0] == ("4", "The answer is 4.")
    s = out.section.summary
    assert isinstance(s, LabelSummary)
    assert s.n == 3 and s.failed == 0 and s.calls + s.cached >= 3
    assert "position_checked" in s and s.written == len(out.records)
    assert all(r.provenance["judge_key"] and r.provenance["comparison_id"] for r in out.records)


def test_label_summary_is_a_typed_record_that_reads_and_writes_like_the_dict(tmp_path):
    from judge_rl.runlog import LabelSection, LabelSummary, RunLog, load

    sec = LabelSection(summary={"n": 2, "verdicts": {"a": 1, "b": 1, "tie": 0}, "records": 2})
    assert isinstance(sec.summary, LabelSummary)
    assert sec.summary.n == 2 and sec.summary["verdicts"]["a"] == 1
    assert "calls" not in sec.summary and sec.summary.get("calls", -1) == -1
    assert dict(sec.summary) == {"n": 2, "verdicts": {"a": 1, "b": 1, "tie": 0}, "records": 2}
    with pytest.raises(KeyError):
        sec.summary["calls"]
    RunLog(run="r", command="label", label=sec).save(tmp_path)
    raw = json.loads((tmp_path / "log.json").read_text())["label"]["summary"]
    assert raw == {"n": 2, "verdicts": {"a": 1, "b": 1, "tie": 0}, "records": 2}
    assert load(tmp_path).label.summary == sec.summary
    assert "cost" in LabelSummary.model_fields and "transport" in LabelSummary.model_fields


def test_library_label_prints_nothing_and_reports_progress(capsys):
    import asyncio

    from judge_rl.pipeline.label import LabelConfig, label_comparisons, pair_candidates

    seen = []
    comps = pair_candidates(_cands(), pairing="all")
    labels = asyncio.run(
        label_comparisons(
            LabelConfig(judge="mock-pairwise", drop_ties=True),
            comps,
            load_judge("mock-pairwise", cache=None),
            on_progress=lambda p: seen.append((p.done, p.final)),
        )
    )
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert seen and seen[-1][1] and seen[-1][0] >= len(comps)  # units: both orders shown
    assert all(not r.is_tie for r in labels.records)
    assert labels.section.summary.ties_dropped == labels.section.summary.ties


def test_judge_options_left_the_judge_package_and_audit_no_longer_imports_label():
    """What this issue moved (the package-wide argparse and command-import rule is
    tests/test_layout.py's)."""
    from tests.test_layout import _imports

    assert not (PKG / "judge" / "cli_options.py").exists()
    assert (PKG / "commands" / "_judge_options.py").exists()
    audit = _imports(PKG / "commands" / "audit.py")
    assert not any(n.startswith("judge_rl.commands.label") for n in audit)


def test_pipeline_stage_refresh_asks_the_judge_again(tmp_path):
    from judge_rl.judge.cache import JudgmentCache
    from judge_rl.pipeline.label import LabelConfig, label

    cache = JudgmentCache(tmp_path / "c.sqlite")
    cfg = LabelConfig(judge="mock-pairwise", pairing="all")
    first = label(cfg, _cands(), load_judge("mock-pairwise", cache=cache))
    again = label(cfg, _cands(), load_judge("mock-pairwise", cache=cache))
    cfg.refresh = True
    fresh = label(cfg, _cands(), load_judge("mock-pairwise", cache=cache))
    cache.close()
    assert first.section.summary.calls > 0 and again.section.summary.calls == 0
    assert fresh.section.summary.calls == first.section.summary.calls


def test_a_pipeline_spec_with_an_unknown_pairing_is_refused_before_any_stage(tmp_path):
    import yaml

    from judge_rl.errors import ConfigError
    from judge_rl.pipeline import read_pipeline, validate

    spec = yaml.safe_load((PKG.parent / "evals" / "demo.yaml").read_text(encoding="utf-8"))
    label_stage = next(n for n, st in spec["stages"].items() if st.get("kind", n) == "label")

    def with_config(**extra) -> Path:
        spec["stages"][label_stage].setdefault("config", {}).update(extra)
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    with pytest.raises(ConfigError, match="pairing must be one of consecutive, all, baseline") as e:
        validate(read_pipeline(with_config(pairing="bogus")), "quick")
    # the config's own check names the stage, the key and the spec file, like a wrong type does
    assert e.value.setting == f"stages.{label_stage}.config.pairing"
    assert f"stage {label_stage!r}" in str(e.value) and str(e.value).startswith(str(tmp_path))
    plan = validate(read_pipeline(with_config(pairing="all", seed=1)), "quick")
    assert plan.configs[label_stage].pairing == "all"
