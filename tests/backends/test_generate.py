"""``judge-rl generate``: tiny saved model (CLI, resume), OpenAI-compatible endpoint, embedded model."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from judge_rl.errors import ConfigError


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _generate(argv: list[str]) -> int:
    """Run ``judge-rl generate ARGV`` in this process (the model libraries are loaded already)."""
    from judge_rl.cli import build_parser

    args = build_parser().parse_args(["generate", *argv])
    return int(args.func(args))


def test_generate_tiny_model_writes_candidates_and_resumes(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "cands.jsonl"
    common = [
        "--model",
        str(tiny_model_dir),
        "--prompts",
        "builtin:gsm8k-demo",
        "--n",
        "2",
        "--max-new-tokens",
        "4",
        "--output",
        str(out),
        "--source",
        "tiny",
        "--run",
        str(tmp_path / "run"),
    ]
    assert _generate([*common, "--limit", "3"]) == 0
    rows = _rows(out)
    assert len(rows) == 6
    assert {row["source"] for row in rows} == {"tiny"}
    assert len({row["id"] for row in rows}) == 6
    first = rows[0]["metadata"]
    assert first["reference"]  # GSM8K final answer carried from the prompt item
    assert first["sampling"]["temperature"] == 0.7 and first["sampling"]["n"] == 2
    assert first["completion_tokens"] > 0
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert log["command"] == "generate" and log["generate"]["summary"]["candidates"] == 6

    # A crash mid-write leaves a partial line; the next run drops it and does only what is missing.
    with out.open("a") as f:
        f.write('{"id": "c-partial", "prompt_id": "gsm8k')
    capsys.readouterr()
    assert _generate([*common, "--limit", "4"]) == 0
    assert "resuming: 3 of 4" in capsys.readouterr().err
    rows2 = _rows(out)
    assert len(rows2) == 8 and rows2[:6] == rows
    assert len({row["prompt_id"] for row in rows2}) == 4

    from judge_rl.data import read_candidates

    assert len(read_candidates(out)) == 8  # the data layer reads what generate writes


def test_generate_through_openai_endpoint_keeps_the_key_secret(tmp_path, monkeypatch, capsys):
    pytest.importorskip("aiohttp")
    from judge_rl.backends._fakeserver import start_in_thread

    secret = "sk-generate-SECRET-0987654321"
    monkeypatch.setenv("MY_TEST_KEY", secret)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"say {i}"}) + "\n" for i in range(5))
    )
    out = tmp_path / "out.jsonl"
    with start_in_thread(reply="echo") as srv:
        rc = _generate(
            [
                "--backend",
                "openai",
                "--base-url",
                srv.url,
                "--model",
                "fake",
                "--api-key-env",
                "MY_TEST_KEY",
                "--prompts",
                str(prompts),
                "--n",
                "2",
                "--output",
                str(out),
                "--run",
                str(tmp_path / "run"),
            ]
        )
        assert srv.state.auth == {f"Bearer {secret}"}
    assert rc == 0
    rows = _rows(out)
    assert len(rows) == 10 and rows[0]["response"].startswith("echo: say")
    for path in [out, tmp_path / "run" / "log.json"]:
        assert secret not in path.read_text()
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err


def test_generate_tops_up_samples_from_servers_that_ignore_n(tmp_path):
    pytest.importorskip("aiohttp")
    from judge_rl.backends._fakeserver import start_in_thread

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"say {i}"}) + "\n" for i in range(4))
    )
    out = tmp_path / "out.jsonl"
    with start_in_thread(reply="echo", ignore_n=True) as srv:
        rc = _generate(
            [
                "--backend",
                "openai",
                "--base-url",
                srv.url,
                "--model",
                "fake",
                "--prompts",
                str(prompts),
                "--n",
                "3",
                "--output",
                str(out),
                "--run",
                str(tmp_path / "run"),
            ]
        )
        assert sorted(srv.state.hits.values()) == [3, 3, 3, 3]
    assert rc == 0
    rows = _rows(out)
    assert len(rows) == 12
    assert sorted(r["metadata"]["sample"] for r in rows) == sorted([0, 1, 2] * 4)
    assert len({r["id"] for r in rows}) == 12


def test_generate_unreachable_endpoint_exits_2_with_one_line(cli, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = cli(
        "generate",
        "--backend",
        "openai",
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
        "--model",
        "m",
        "--prompts",
        "builtin:gsm8k-demo",
        "--limit",
        "2",
        "--output",
        str(tmp_path / "o.jsonl"),
        "--run",
        str(tmp_path / "run"),
    )
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"127.0.0.1:{port}/v1" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_bad_settings_are_rejected_before_loading():
    from judge_rl.cli import build_parser
    from judge_rl.commands.generate import check_args

    base = ["generate", "--model", "m", "--prompts", "p", "--output", "o.jsonl"]
    for extra, setting in [
        (["--n", "0"], "--n"),
        (["--top-p", "0"], "--top-p"),
        (["--base-url", "http://x/v1"], "--base-url"),
        (["--temperature", "0", "--n", "2"], "--n"),  # greedy: one answer per prompt
        (["--timeout", "0"], "--timeout"),
    ]:
        args = build_parser().parse_args(base + extra)
        with pytest.raises(ConfigError, match=setting):
            check_args(args)


def test_generate_with_the_embedded_model(embedded, tmp_path, monkeypatch):
    from judge_rl.backends.hf import HFBackend
    from judge_rl.cli import build_parser
    from judge_rl.commands import generate
    from judge_rl.pipeline import generate as library

    model, tok = embedded
    monkeypatch.setattr(
        library,
        "make_backend",
        lambda cfg: HFBackend("embedded", model_object=model, tokenizer=tok, batch_size=2),
    )
    out = tmp_path / "emb.jsonl"
    prompts = tmp_path / "short.jsonl"
    prompts.write_text(
        json.dumps({"id": "add", "prompt": "What is 2+3?", "reference": "5"})
        + "\n"
        + json.dumps({"id": "sky", "prompt": "What colour is the sky?"})
        + "\n"
    )
    args = build_parser().parse_args(
        [
            "generate",
            "--model",
            "embedded",
            "--prompts",
            str(prompts),
            "--limit",
            "2",
            "--max-new-tokens",
            "8",
            "--temperature",
            "0",
            "--output",
            str(out),
            "--run",
            str(tmp_path / "run"),
        ]
    )
    assert generate.run(args) == 0
    rows = _rows(out)
    assert len(rows) == 2 and rows[0]["source"] == "smollm2-135m-instruct"
    assert all(row["response"].strip() for row in rows)
    assert rows[0]["metadata"]["sampling"]["temperature"] == 0.0
    assert rows[0]["metadata"]["reference"] == "5"


# --- a llama.cpp-like server (issue 16 item 6) ------------------------------------------------


def test_llama_cpp_like_server_generate_n6_and_label_with_default_settings(tmp_path):
    """One request at a time, ``n`` ignored, ``top_logprobs`` returned. ``generate --n 6`` and
    ``label`` (with label probabilities) run with the default concurrency (64) and retries; the
    timeout is shortened to 1 s so that queueing 64 requests at a 0.1 s server would throw
    answers away. The judge replies in words ("Answer: the second"), with the labels in the
    first position's top_logprobs, as issue 16 item 6 states it. Before: 5 of 6 samples then an
    error (and the samples discarded), the source named after the embedded model, timeouts with
    requests asked again, and every reply in words a ``parse:`` error."""
    pytest.importorskip("aiohttp")
    from judge_rl.backends._fakeserver import start_in_thread
    from judge_rl.cli import main
    from judge_rl.runlog import load

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"say {i}"}) + "\n" for i in range(6))
    )
    out = tmp_path / "cands.jsonl"
    with start_in_thread(reply="echo", ignore_n=True, slots=1, latency_s=0.04) as srv:
        rc = _generate(
            [
                "--backend", "openai", "--base-url", srv.url, "--model", "smollm2",
                "--prompts", str(prompts), "--n", "6", "--timeout", "1",
                "--output", str(out), "--run", str(tmp_path / "gen"),
            ]
        )  # fmt: skip
        assert srv.state.max_busy == 1
    assert rc == 0
    rows = _rows(out)
    assert len(rows) == 36
    assert {r["source"] for r in rows} == {"smollm2"}  # the served model, not the embedded one
    assert sorted(r["metadata"]["sample"] for r in rows) == sorted(list(range(6)) * 6)
    summary = load(tmp_path / "gen").generate.summary
    assert summary.timeouts == 0 and summary.failed == 0
    assert summary.attempts == 36  # one request per sample, none repeated
    assert rows[0]["metadata"]["transport"]["attempts"] == 6  # the prompt's 6 requests

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"prompt": f"q {i}", "response_a": f"one {i}", "response_b": f"two {i}"})
            + "\n"
            for i in range(24)
        )
    )
    spec = tmp_path / "judge" / "judge.yaml"
    spec.parent.mkdir()
    (spec.parent / "prompt.j2").write_text(
        "Question: {{ prompt }}\nFirst: {{ response_a }}\nSecond: {{ response_b }}\n"
        "Which is better? End with [[A]], [[B]] or [[C]] on a line of its own."
    )
    with start_in_thread(reply="answer", slots=1, latency_s=0.1) as srv:
        spec.write_text(
            json.dumps(
                {
                    "version": "1", "kind": "pairwise", "backend": "openai",
                    "model": "smollm2", "base_urls": [srv.url], "timeout_s": 1,
                    "template": "prompt.j2", "label_probs": True, "order": "fixed",
                    "max_tokens": 16,
                }
            )
        )  # fmt: skip
        rc = main(
            [
                "label", "--judge", str(spec), "--input", str(pairs), "--no-cache",
                "--output", str(tmp_path / "labels.jsonl"), "--run", str(tmp_path / "lab"),
            ]
        )  # fmt: skip
        hits = dict(srv.state.hits)
        assert srv.state.max_busy == 1
    assert rc == 0
    assert len(hits) == 24 and max(hits.values()) == 1  # no timeouts, nothing asked twice
    judgments = load(tmp_path / "lab").label.judgments
    assert len(judgments) == 24 and all(j.error is None and j.winner for j in judgments)
    assert all(j.p_a is not None for j in judgments)
    assert all(j.calls[0].note == "verdict_from_probs" for j in judgments)
    assert load(tmp_path / "lab").label.summary["verdict_from_probs"] == 24
    assert all(j.calls[0].raw.startswith("Answer:") for j in judgments)


def _gen_openai(url: str, prompts: Path, out: Path, run: Path, *extra: str) -> int:
    return _generate(
        [
            "--backend", "openai", "--base-url", url, "--model", "m", "--prompts", str(prompts),
            "--output", str(out), "--run", str(run), "--max-retries", "0", *extra,
        ]
    )  # fmt: skip


def test_generate_keeps_the_samples_it_got_and_exits_1_with_counts(tmp_path, capsys):
    """A server that answers one sample per request and then fails for that prompt: the
    sample it gave is kept (before: discarded with the whole prompt), the exit status is 1 with
    counts by error kind, and a re-run asks only for the missing samples."""
    pytest.importorskip("aiohttp")
    from judge_rl.backends._fakeserver import start_in_thread

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"say {i}"}) + "\n" for i in range(3))
    )
    out = tmp_path / "out.jsonl"
    with start_in_thread(reply="echo", ignore_n=True, faults={"server_after_first": 1.0}) as srv:
        rc = _gen_openai(srv.url, prompts, out, tmp_path / "r1", "--n", "3")
    assert rc == 1
    err = capsys.readouterr().err
    assert "3 prompts failed (server: 3, 3 with some samples kept)" in err
    assert len(_rows(out)) == 3 and {r["metadata"]["sample"] for r in _rows(out)} == {0}
    with start_in_thread(reply="echo") as srv:
        rc = _gen_openai(srv.url, prompts, out, tmp_path / "r2", "--n", "3")
        assert sum(srv.state.hits.values()) == 3  # one request of n=2 per prompt
    assert rc == 0
    rows = _rows(out)
    assert sorted(r["metadata"]["sample"] for r in rows) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len({r["id"] for r in rows}) == 9


def test_generate_exit_codes(tmp_path, capsys):
    """0: all done; 1: some prompts failed (counts by kind), also when all failed; 2: set-up
    (no prompts)."""
    pytest.importorskip("aiohttp")
    from judge_rl.backends._fakeserver import start_in_thread
    from judge_rl.errors import DataError

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"say {i}"}) + "\n" for i in range(4))
    )
    with start_in_thread(reply="echo", faults={"server_always": 1.0}) as srv:
        rc = _gen_openai(srv.url, prompts, tmp_path / "all.jsonl", tmp_path / "r1")
    assert rc == 1 and "4 prompts failed (server: 4)" in capsys.readouterr().err
    with start_in_thread(reply="echo") as srv:
        assert _gen_openai(srv.url, prompts, tmp_path / "ok.jsonl", tmp_path / "r2") == 0
        with pytest.raises(DataError, match="no prompts"):
            _gen_openai(srv.url, prompts, tmp_path / "none.jsonl", tmp_path / "r3", "--limit", "0")
