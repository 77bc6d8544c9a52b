"""Win rates: AlpacaEval files as they are, soft labels, ties, and the length-controlled rate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from judge_rl.errors import DataError
from judge_rl.tournament.winrate import read_pref_rows, winrates


def _alpaca_file(tmp_path, n=300, seed=0):
    """Two contestants vs gpt4_turbo: `verbose` is as good as the baseline but longer, and the
    (simulated) judge likes length; `concise` is genuinely better at the same length."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        base_len = int(rng.integers(200, 800))
        for model, quality, extra in (("verbose", 0.0, 400), ("concise", 0.8, 0)):
            out_len = max(10, base_len + int(rng.normal(extra, 400)))
            delta = (out_len - base_len) / 400
            p = 1 / (1 + math.exp(-(quality + 1.5 * math.tanh(delta))))
            pref = 2.0 if rng.random() < p else 1.0
            rows.append(
                {
                    "instruction": f"q{k}",
                    "output_1": "x" * base_len,
                    "generator_1": "gpt4_turbo",
                    "output_2": "y" * out_len,
                    "generator_2": model,
                    "annotator": "sim",
                    "preference": pref,
                }
            )
    rows[0]["preference"] = None  # an unannotated row: skipped and counted
    rows[1]["preference"] = 0  # AlpacaEval's draw
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(rows))
    return path


def test_length_controlled_removes_the_length_advantage(tmp_path):
    rows, gens = read_pref_rows(_alpaca_file(tmp_path), "gpt4_turbo")
    assert gens == ["concise", "gpt4_turbo", "verbose"]
    res = {r["model"]: r for r in winrates(rows, length_controlled=True)}
    v, c = res["verbose"], res["concise"]
    assert v["skipped"] == 1 and v["draws"] == 0 and c["draws"] == 1
    assert v["win_rate"] > 0.62  # the judge rewards length...
    assert abs(v["lc_win_rate"] - 0.5) < 0.1  # ...which LC removes
    # AlpacaEval's feature is tanh((len_baseline - len_model) / sd): longer wins -> negative
    assert v["length_coef"] < -0.5
    assert set(v["lc_weights"]) == {"length", "instruction_difficulty", "model", "C"}
    # the genuinely better model keeps its advantage (sigma(0.8) = 0.69)
    assert c["lc_win_rate"] == pytest.approx(0.69, abs=0.08)
    assert c["mean_pref"] == pytest.approx(c["win_rate"], abs=0.02)
    assert 0 < c["se"] < 0.05


def test_soft_labels_and_baseline_on_either_side(tmp_path):
    rows = [
        {"model_a": "m", "model_b": "base", "p_a": 0.75},
        {"model_a": "base", "model_b": "m", "winner": "model_a"},
        {"model_a": "m", "model_b": "base", "winner": "tie"},
    ]
    p = tmp_path / "r.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (res,) = winrates(read_pref_rows(p, "base")[0])
    assert res["mean_pref"] == pytest.approx((0.75 + 0 + 0.5) / 3)
    assert (res["wins"], res["draws"], res["losses"]) == (1, 1, 1)


def test_errors(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([{"generator_1": "a", "generator_2": "b", "preference": 7}]))
    with pytest.raises(DataError, match=r"a\.json:1: preference: preference 7 out of range"):
        read_pref_rows(p, "a")
    p.write_text(json.dumps([{"generator_1": "a", "generator_2": "b", "preference": 1}]))
    with pytest.raises(DataError, match="no rows against the baseline 'zzz'"):
        read_pref_rows(p, "zzz")


def test_cli(cli, tmp_path):
    path = _alpaca_file(tmp_path, n=120)
    r = cli(
        "winrate",
        str(path),
        "--baseline",
        "gpt4_turbo",
        "--length-controlled",
        "--run",
        str(tmp_path / "wr"),
    )
    assert r.returncode == 0, r.stderr
    assert "verbose" in r.stdout and "LC win rate" in r.stdout
    from judge_rl import runlog

    t = runlog.load(tmp_path / "wr").tournament
    assert {w["model"] for w in t.winrates} == {"verbose", "concise"}
    for key in ("mean_pref", "se", "win_rate", "lc_win_rate", "wins", "draws", "losses"):
        assert key in t.winrates[0]
    from judge_rl.cli import main

    assert main(["winrate", str(path), "--baseline", "nobody", "--run", str(tmp_path / "wr2")]) == 2


def test_judge_rl_label_outputs(tmp_path):
    # preference rows as `judge-rl label` writes them (TRL columns + provenance with sources)
    rows = [
        {
            "prompt": "q",
            "chosen": "long answer",
            "rejected": "short",
            "p_chosen": 0.8,
            "prompt_id": "1",
            "provenance": {"chosen_source": "m", "rejected_source": "base"},
        },
        {
            "prompt": "q2",
            "chosen": "x",
            "rejected": "y",
            "p_chosen": 0.5,
            "prompt_id": "2",
            "provenance": {"chosen_source": "base", "rejected_source": "m"},
        },
    ]
    p = tmp_path / "prefs.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (res,) = winrates(read_pref_rows(p, "base")[0])
    assert res["mean_pref"] == pytest.approx((0.8 + 0.5) / 2)
    assert (res["wins"], res["draws"], res["losses"]) == (1, 1, 0)
