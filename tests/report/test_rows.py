"""Issue 20 items 4 and 8: one leaderboard row model, rendered alike by the CLI table, the
terminal report and the HTML report; the interval's actual level and scheme beside it; the SE of
the mean preference never paired with the discrete win rate."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from judge_rl import runlog
from judge_rl.report.html import render_html
from judge_rl.report.terminal import render_text
from judge_rl.tournament.table import board_cells, rich_table, winrate_cells, winrate_table

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _plain(renderable) -> str:
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None, no_color=True).print(renderable)
    return buf.getvalue()


def test_one_row_model_in_cli_terminal_and_html():
    log = runlog.load(FIXTURES / "tournament")
    sec = log.tournament
    assert sec is not None
    cli = _plain(rich_table(sec.leaderboard, interval=sec.model_extra["interval"]))
    term = render_text(log, width=200)
    html = render_html(log)
    for r in sec.leaderboard:
        cells = board_cells(r)
        for key in ("rank", "rating", "ci", "wtl", "win_rate"):
            assert cells[key] in cli, (key, cells[key])
            assert cells[key] in term, (key, cells[key])
            assert f"<td>{cells[key]}</td>" in html, (key, cells[key])
    for text in (cli, term, html):
        assert "90% CI" in text and "95% CI" not in text
        assert "bootstrap over prompts (clustered), 200 rounds" in text


def test_html_pairs_se_with_the_mean_preference_not_the_win_rate():
    log = runlog.load(FIXTURES / "tournament")
    sec = log.tournament
    assert sec is not None
    html = render_html(log)
    cli = _plain(winrate_table(sec.winrates))
    term = render_text(log, width=200)
    for w in sec.winrates:
        c = winrate_cells(w)
        # "70.0% ± 3.0%": the SE beside the mean preference it belongs to
        assert c["mean_pref"].endswith(f"± {w['se']:.1%}")
        row = re.search(rf"<tr><td class=\"data\">{re.escape(w['model'])}</td>.*?</tr>", html)
        assert row is not None
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0))
        assert cells[3] == c["mean_pref"] and cells[4] == c["win_rate"]
        for text in (cli, term):
            assert c["mean_pref"] in text and c["win_rate"] in text
    assert "mean pref ± SE" in html and "<th>se</th>" not in html


def test_no_interval_recorded_says_so_instead_of_95():
    log = runlog.load(FIXTURES / "tournament")
    assert log.tournament is not None
    log.tournament.model_extra.pop("interval")
    html = render_html(log)
    term = render_text(log, width=200)
    for text in (html, term):
        assert "95% CI" not in text and "level and method not recorded" in text
