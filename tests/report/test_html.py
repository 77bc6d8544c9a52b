"""HTML report: every section, one offline file, safe embedding, the 10k-row budget, the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from judge_rl import runlog
from judge_rl.report.html import (
    TEMPLATES,
    browser_rows,
    default_path,
    json_for_script,
    render_html,
    write_report,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STAGES = ("label", "audit", "reward_model", "ppo", "overopt", "tournament")


class Tags(HTMLParser):
    """Collects every start tag with its attributes, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in = dict(attrs)
            self.scripts.append((self._in, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None

    def handle_data(self, data):
        if self._in is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def parse(html: str) -> Tags:
    p = Tags()
    p.feed(html)
    return p


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_renders_its_section(stage):
    html = render_html(runlog.load(FIXTURES / stage))
    for s in STAGES:
        assert (f'<section id="{s}">' in html) == (s == stage), s
    assert '<section id="meta">' in html
    assert ('<section id="browser">' in html) == (stage in ("label", "audit"))


def test_combined_shows_every_panel():
    html = render_html(runlog.load(FIXTURES / "combined"))
    for s in (*STAGES, "browser", "meta", "notes"):
        assert f'<section id="{s}">' in html, s
    # leaderboard with CI bars + rank intervals; both heatmaps
    # the recorded level and scheme, never a hard-coded 95%
    assert "ratings (bt) with 90% CIs" in html and "1 (1–2)" in html
    assert "90% CI, bootstrap over prompts (clustered), 200 rounds" in html
    assert "observed win rate" in html and "predicted win rate" in html
    assert 'class="never"' in html  # a pair that never met is marked, not coloured
    # curves with alarm markers (PPO and over-optimisation)
    assert html.count('class="alarm"') >= 4 and "gold vs proxy reward" in html
    assert "KL to reference" in html and "reward (mean ± std)" in html
    # audit panel: agreement, kappa, biases, injection flip rate, variants side by side
    for text in (
        "agreement with humans",
        "Cohen&#39;s kappa",
        "P(first shown wins)",
        "P(longer wins), judge",
        "injection flip rate",
        "order=fixed",
        "jury(3)",
    ):
        assert text in html, text
    # degeneration examples, probes, metadata (fingerprint key, environment, timings, cost)
    assert "degenerate examples at step 320" in html and "sycophancy" in html
    log = runlog.load(FIXTURES / "combined")
    assert log.judges[0].key in html and "2.13.0" in html and "6 m 50 s" in html
    assert "$0.2600" in html


def test_one_offline_file():
    html = render_html(runlog.load(FIXTURES / "combined"))
    tags = parse(html)
    # nothing is fetched: no src/href to anything but in-page anchors, no link/img/iframe tags
    for tag, attrs in tags.tags:
        assert tag not in ("link", "img", "iframe", "object", "embed", "base"), tag
        assert "src" not in attrs, (tag, attrs)
        if "href" in attrs:
            assert (attrs["href"] or "").startswith("#"), attrs
    urls = set(re.findall(r"(?:https?|wss?|ftp)://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    assert "@import" not in html and "url(" not in html
    # a CSP that names the page's own script by hash and allows no network
    scripts = [t for a, t in tags.scripts if a.get("type") != "application/json"]
    assert len(scripts) == 1 and scripts[0] == (TEMPLATES / "report.js").read_text()
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    csp = next(
        a["content"] for t, a in tags.tags if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert f"'sha256-{digest}'" in csp and "default-src 'none'" in csp
    css = (TEMPLATES / "report.css").read_text()
    css_digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"style-src 'sha256-{css_digest}'" in csp and "unsafe-inline" not in csp


def test_rows_embedded_once_and_round_trip():
    log = runlog.load(FIXTURES / "combined")
    html = render_html(log)
    tags = parse(html)
    blocks = [t for a, t in tags.scripts if a.get("type") == "application/json"]
    assert len(blocks) == 1
    data = json.loads(blocks[0])
    assert data == json.loads(json_for_script(browser_rows(log)))
    assert len(data["rows"]) == len(log.label.judgments) + len(log.audit.judgments)
    # each response text is stored once (in the JSON), not again in the markup
    resp = log.label.comparisons[0].b.response
    assert html.count(json_for_script(resp)[1:-1]) == 1


def test_json_for_script_cannot_close_the_block():
    nasty = {"t": "</script><script>alert(1)</script><!-- \u2028\u2029 & \u202e"}
    s = json_for_script(nasty)
    assert "<" not in s and ">" not in s and "&" not in s
    assert "\u2028" not in s and "\u2029" not in s and "\u202e" not in s
    assert json.loads(s)["t"].startswith("</script>")


def test_hostile_log_is_escaped(factory):
    html = render_html(factory.hostile())
    tags = parse(html)
    assert [a.get("type") for a, _ in tags.scripts] == ["application/json", None]
    for tag, attrs in tags.tags:
        assert tag not in ("img", "a") or tag == "a" and (attrs.get("href") or "").startswith("#")
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        for v in attrs.values():
            assert "javascript:" not in (v or "").lower(), (tag, attrs)
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", html)
    # payloads are visible as text (escaped), in the markup and in the SVG charts
    assert "&lt;img src=x onerror=" in html and "&lt;script&gt;" in html
    assert "[U+202E]" in html


def test_large_log_renders_fast_and_small(large_report, capsys):
    log, path, dt = large_report
    size = path.stat().st_size
    text_bytes = sum(
        len((c.prompt + c.a.response + c.b.response).encode()) for c in log.label.comparisons
    )
    with capsys.disabled():
        print(
            f"\n10k comparisons: HTML written in {dt:.2f} s, {size / 1e6:.1f} MB "
            f"({size / text_bytes:.2f}x the prompt+response text) -> {path}"
        )
    assert dt < 15, dt  # a few seconds here; generous for a shared, noisy CI machine
    assert size < 2.5 * text_bytes  # proportional to the data: every text embedded once


def test_write_report_paths(tmp_path):
    log = runlog.load(FIXTURES / "ppo")
    assert write_report(log, tmp_path) == tmp_path / "report.html"
    p = write_report(log, tmp_path / "sub" / "x.html")
    assert p.exists() and p.read_text().startswith("<!DOCTYPE html>")
    assert default_path("reports/run1") == Path("reports/run1/report.html")
    assert default_path("reports/run1/log.json") == Path("reports/run1/report.html")


def test_cli_report(cli, tmp_path):
    run = tmp_path / "reports" / "demo"
    runlog.load(FIXTURES / "combined").save(run)
    r = cli("report", str(run), "--html", "--compare", str(FIXTURES / "ppo"))
    assert r.returncode == 0, r.stderr
    assert "Labelling" in r.stdout and "Runs compared" in r.stdout
    assert "\x1b[" not in r.stdout  # not a TTY: no colour
    assert r.stdout.strip().splitlines()[-1] == str(run / "report.html")
    html = (run / "report.html").read_text()
    assert '<section id="compare">' in html
    out = tmp_path / "elsewhere.html"
    r = cli("report", str(run / "log.json"), "--html", str(out), "-q")
    assert r.returncode == 0 and r.stdout.strip() == str(out) and out.exists()


def test_cli_errors(cli, tmp_path):
    r = cli("report", str(tmp_path / "missing"))
    assert r.returncode == 2 and "no run log here" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "log.json").write_text('{"version": 7, "run": "r", "command": "c"}')
    r = cli("report", str(tmp_path))
    assert r.returncode == 2 and "version 7 is not supported" in r.stderr


def test_colour_only_on_a_tty(monkeypatch):
    """Through a pseudo-terminal the report is coloured, unless NO_COLOR is set (in-process)."""
    import io
    import os
    import pty
    import sys
    import threading

    from judge_rl.cli import main

    def through_pty(no_color: bool) -> str:
        master, slave = pty.openpty()
        out = io.TextIOWrapper(os.fdopen(slave, "wb", buffering=0), encoding="utf-8")
        chunks: list[bytes] = []

        def drain() -> None:
            while True:
                try:
                    b = os.read(master, 65536)
                except OSError:
                    return
                if not b:
                    return
                chunks.append(b)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        if no_color:
            monkeypatch.setenv("NO_COLOR", "1")
        else:
            monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setenv("TERM", "xterm-256color")
        monkeypatch.setenv("COLUMNS", "80")
        monkeypatch.setattr(sys, "stdout", out)
        try:
            assert main(["report", str(FIXTURES / "overopt")]) == 0
            out.flush()
        finally:
            monkeypatch.setattr(sys, "stdout", sys.__stdout__)
            out.close()
            reader.join(5)
            os.close(master)
        return b"".join(chunks).decode(errors="replace")

    coloured = through_pty(no_color=False)
    assert "ALARM" in coloured and "\x1b[" in coloured
    plain = through_pty(no_color=True)
    assert "ALARM" in plain and "\x1b[" not in plain
