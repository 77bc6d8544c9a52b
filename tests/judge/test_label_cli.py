"""`judge-rl label` end to end (the real CLI in a subprocess) with mock and verifier judges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judge_rl.data import write_candidates
from judge_rl.runlog import load
from judge_rl.types import Candidate

PAIRS = [
    {"prompt": "What is 2+2?", "response_a": "4", "response_b": "The answer is 4.", "winner": "b"},
    {
        "prompt": "Name a colour.",
        "response_a": "Blue is a colour.",
        "response_b": "Red",
        "winner": "a",
    },
    {"prompt": "Say hi", "response_a": "hi", "response_b": "yo", "winner": "tie"},
    {
        "prompt": "Capital of Peru?",
        "response_a": "Lima",
        "response_b": "It is Lima.",
        "winner": "b",
    },
]


def write_pairs(path: Path, rows=PAIRS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def label(capsys):
    """Run ``judge-rl label ARGS`` in this process (fast); returns (exit code, stdout, stderr)."""
    from judge_rl.cli import main

    def _run(*args: str):
        capsys.readouterr()
        rc = main(["label", *args])
        out = capsys.readouterr()
        return rc, out.out, out.err

    return _run


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_label_pairs_then_resume_from_cache(label, tmp_path):
    inp = write_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "prefs.jsonl"
    args = ["--judge", "mock-pairwise", "--input", str(inp), "--output", str(out)]
    args += ["--cache", str(tmp_path / "c.sqlite"), "--run", str(tmp_path / "run")]
    rc, out_text, err_text = label(*args, "--no-drop-ties")
    assert rc == 0, err_text
    assert "estimate: 8 calls" in err_text
    assert "position consistency" in out_text and "100.0% of 4" in out_text
    got = rows(out)
    assert len(got) == 4
    tie = next(x for x in got if x["prompt"] == "Say hi")
    assert tie["p_chosen"] == 0.5
    longer = next(x for x in got if x["prompt"] == "What is 2+2?")
    assert longer["chosen"] == "The answer is 4." and longer["rejected"] == "4"
    assert {"prompt", "chosen", "rejected"} <= set(longer)
    log = load(tmp_path / "run")
    assert log.command == "label" and log.label is not None
    assert log.label.summary["calls"] == 8 and log.label.summary["verdicts"]["tie"] == 1
    assert all(j.calls and j.calls[0].raw for j in log.label.judgments)
    assert log.judges[0].name == "mock-pairwise"
    # the same command again: everything comes from the cache
    rc, _, err_text = label(*args, "--no-drop-ties")
    assert rc == 0, err_text
    assert "estimate: 0 calls, 8 cached" in err_text
    assert load(tmp_path / "run").label.summary["calls"] == 0
    assert rows(out) == got
    # issue 15, failure 10: by default the TRL-ready file leaves the tie out, and says so
    rc, out_text, err_text = label(*args)
    assert rc == 0, err_text
    assert [r for r in rows(out) if r["prompt"] == "Say hi"] == [] and len(rows(out)) == 3
    assert "left out 1 ties" in out_text
    assert load(tmp_path / "run").label.summary["ties_dropped"] == 1


def test_label_candidates_pairs_and_baseline(label, tmp_path):
    cands = []
    for i, q in enumerate(["Explain rain.", "Define entropy."]):
        for src, resp in [
            ("base", "short"),
            ("m1", "a medium answer"),
            ("m2", "a much longer answer than both"),
        ]:
            cands.append(
                Candidate(prompt_id=f"q{i}", prompt=q, response=f"{resp} ({i})", source=src)
            )
    inp = tmp_path / "cands.jsonl"
    write_candidates(cands, inp)
    out = tmp_path / "prefs.jsonl"
    base = ["--judge", "mock-pairwise", "--input", str(inp), "--no-cache", "--order", "fixed"]
    rc, _, err = label(*base, "--output", str(out), "--run", str(tmp_path / "r1"))
    assert rc == 0, err
    assert len(rows(out)) == 6  # 3 pairs per prompt
    rc, _, err = label(
        *base, "--output", str(out), "--baseline", "base", "--run", str(tmp_path / "r2")
    )
    assert rc == 0, err
    got = rows(out)
    assert len(got) == 4 and all(x["provenance"]["rejected_source"] == "base" for x in got)


def test_failures_excluded_and_counted(label, tmp_path, write_spec):
    spec = write_spec(
        "flaky",
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\norder: fixed\n"
        "backend_options: {faults: {parse: 0.3, timeout: 0.3}, seed: 1}\n",
    )
    rows_in = [
        {"prompt": f"q{i}", "response_a": "x" * (i + 1), "response_b": "y" * 3} for i in range(30)
    ]
    inp = write_pairs(tmp_path / "pairs.jsonl", rows_in)
    out = tmp_path / "prefs.jsonl"
    rc, out_text, err = label(
        "--judge",
        spec,
        "--input",
        str(inp),
        "--output",
        str(out),
        "--no-cache",
        "--run",
        str(tmp_path / "run"),
    )
    # issue 16 item 5: the work ran but some items failed -> exit 1 with counts by kind
    assert rc == 1, err
    summary = load(tmp_path / "run").label.summary
    fails = summary["failures"]
    assert fails.get("parse", 0) > 0 and fails.get("timeout", 0) > 0
    n = sum(fails.values())
    assert f"{n} of 30 comparisons failed" in err and "parse: " in err and "timeout: " in err
    written = 30 - sum(fails.values()) - summary["ties_dropped"]
    assert len(rows(out)) == written == summary["written"]
    assert "failures" in out_text and "parse" in out_text


def test_budget_stop_exits_2_and_keeps_work(label, tmp_path):
    inp = write_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "prefs.jsonl"
    rc, _, err = label(
        "--judge",
        "mock-pairwise",
        "--input",
        str(inp),
        "--output",
        str(out),
        "--cache",
        str(tmp_path / "c.sqlite"),
        "--max-calls",
        "5",
        "--run",
        str(tmp_path / "run"),
    )
    assert rc == 2
    assert "budget reached" in err and "--max-calls 5" in err
    assert len(rows(out)) == 2  # two whole pairs finished before the stop
    assert load(tmp_path / "run").label.summary["failures"] == {"budget": 2}


BAD_SPECS = {
    "unknown key": (
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\nmodle: x\n",
        "{{ response_a }} {{ response_b }}",
        "modle: unknown key",
    ),
    "missing variable": (
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n",
        "{{ response_a }} vs {{ response_b }} given {{ context }}",
        "context",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_exits_2_with_one_message(label, tmp_path, write_spec, case):
    yaml_text, template, needle = BAD_SPECS[case]
    spec = write_spec("bad", yaml_text, template=template)
    inp = write_pairs(tmp_path / "pairs.jsonl")
    rc, _, err = label("--judge", spec, "--input", str(inp), "--output", str(tmp_path / "o.jsonl"))
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert not (tmp_path / "o.jsonl").exists()


def test_unreachable_endpoint_exits_2_real_process(cli, tmp_path, write_spec):
    spec = write_spec(
        "w",
        "version: 1\nkind: pairwise\nbackend: openai\nmodel: m\ntemplate: prompt.j2\n"
        "base_url: http://127.0.0.1:9/v1\nmax_retries: 0\ntimeout_s: 2\n",
    )
    inp = write_pairs(tmp_path / "pairs.jsonl")
    r = cli(
        "label",
        "--judge",
        spec,
        "--input",
        str(inp),
        "--output",
        str(tmp_path / "o.jsonl"),
        "--no-cache",
        "--run",
        str(tmp_path / "run"),
    )
    assert r.returncode == 2, r.stderr
    err_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and "127.0.0.1:9" in err_lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_verifier_labels_gsm8k_style(label, tmp_path):
    cands = []
    for i, (ref, good, bad) in enumerate(
        [("12", "So 5+7 = 12.\n#### 12", "#### 11"), ("3", "#### 3", "#### 4")]
    ):
        for src, resp in [("good", good), ("bad", bad)]:
            cands.append(
                Candidate(
                    prompt_id=f"g{i}",
                    prompt=f"problem {i}",
                    response=resp,
                    source=src,
                    metadata={"reference": ref},
                )
            )
    inp = tmp_path / "c.jsonl"
    write_candidates(cands, inp)
    out = tmp_path / "p.jsonl"
    rc, _, err = label(
        "--judge",
        "gsm8k-exact",
        "--input",
        str(inp),
        "--output",
        str(out),
        "--no-cache",
        "--run",
        str(tmp_path / "run"),
    )
    assert rc == 0, err
    got = rows(out)
    assert len(got) == 2 and all(x["provenance"]["chosen_source"] == "good" for x in got)
    assert all(x["origin"] == "verifier" for x in got)


def test_bad_output_extension_fails_before_judging(label, tmp_path):
    inp = write_pairs(tmp_path / "pairs.jsonl")
    rc, _, err = label(
        "--judge", "mock-pairwise", "--input", str(inp), "--output", str(tmp_path / "o.txt")
    )
    assert rc == 2 and "--output" in err and "judging" not in err


def test_secrets_in_urls_stay_out_of_the_run_log(label, tmp_path):
    inp = write_pairs(tmp_path / "pairs.jsonl")
    rc, _, err = label(
        "--judge",
        "mock-pairwise",
        "--input",
        str(inp),
        "--output",
        str(tmp_path / "o.jsonl"),
        "--no-cache",
        "--base-url",
        "http://user:hunter2@127.0.0.1:8000/v1?api_key=sk-zzz",
        "--run",
        str(tmp_path / "run"),
    )
    assert rc == 0, err
    text = (tmp_path / "run" / "log.json").read_text()
    assert "hunter2" not in text and "sk-zzz" not in text
    assert "http://127.0.0.1:8000/v1" in text


def test_exit_status_follows_failures_and_max_failures(label, tmp_path, write_spec):
    spec = write_spec(
        "flaky2",
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\norder: fixed\n"
        "backend_options: {faults: {timeout: 0.3}, seed: 1}\n",
    )
    rows_in = [
        {"prompt": f"q{i}", "response_a": "x" * (i + 1), "response_b": "y" * 3} for i in range(20)
    ]
    inp = write_pairs(tmp_path / "pairs.jsonl", rows_in)
    base = ["--judge", spec, "--input", str(inp), "--no-cache", "--run", str(tmp_path / "r")]
    rc, _, err = label(*base, "--output", str(tmp_path / "a.jsonl"))
    assert rc == 1 and "comparisons failed (timeout: " in err
    rc, _, err = label(*base, "--output", str(tmp_path / "b.jsonl"), "--max-failures", "60%")
    assert rc == 0, err
    # every comparison a tie, ties dropped: an empty output is never a success
    tie = write_spec(
        "ties",
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\norder: fixed\n"
        "backend_options: {rule: tie}\n",
    )
    rc, _, err = label(
        "--judge", tie, "--input", str(inp), "--no-cache", "--output", str(tmp_path / "c.jsonl"),
        "--run", str(tmp_path / "r2"),
    )  # fmt: skip
    assert rc == 1 and "nothing was written (20 ties left out)" in err
