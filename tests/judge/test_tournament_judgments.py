"""Issue 15, failure 9: tournaments keep every Judgment in the run log (order shown, raw output,
p_a, consistency, error) and the HTML comparison browser shows the tournament's battles."""

from __future__ import annotations

import json
from pathlib import Path

from judge_rl import runlog
from judge_rl.judge import load_judge
from judge_rl.report.html import browser_rows, render_html
from judge_rl.tournament.runner import build_field, load_spec, run_tournament, tournament_section

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "mt_bench"
MODELS = ["gpt-4", "alpaca-13b", "llama-13b"]


def _field(tmp_path):
    body = (
        "version: 1\nname: t\ncontestants:\n"
        + "".join(f"  - file: {SAMPLE}/model_answer/{m}.jsonl\n" for m in MODELS)
        + f"prompts: {SAMPLE}/question.jsonl\njudge: mock-pairwise\ncache: none\n"
    )
    p = tmp_path / "spec.yaml"
    p.write_text(body)
    spec, base = load_spec(p)
    return build_field(spec, base)


def test_issue15_9_tournament_judgments_reach_the_log_and_the_browser(tmp_path):
    res = run_tournament(load_judge("mock-pairwise"), _field(tmp_path), budget=12, bootstrap=20)
    log = runlog.new_log("tournament", "t")
    log.tournament = tournament_section(res)
    path = log.save(tmp_path / "run")
    back = runlog.load(path)
    data = json.loads(Path(path).read_text())["tournament"]
    assert len(data["judgments"]) == res.comparisons == len(data["comparison_records"])
    j = data["judgments"][0]
    assert j["order"] == "both" and j["consistent"] in (True, False)
    assert len(j["calls"]) == 2 and {c["first_id"] for c in j["calls"]} == {j["a_id"], j["b_id"]}
    assert all(c["raw"] for c in j["calls"])  # the judge's own words survive
    rows = [r for r in browser_rows(back)["rows"] if r["s"] == "tournament"]
    assert len(rows) == res.comparisons
    assert {r["ma"] for r in rows} | {r["mb"] for r in rows} <= set(MODELS)
    assert all(r["x"] and r["w"] in ("a", "b", "tie", "fail") for r in rows)
    html = render_html(back)
    assert 'value="tournament"' in html and '"s":"tournament"' in html.replace(" ", "")
