"""Issue 16 item 6: attempts, retries, timeouts and per-attempt latency of every judge call reach
the Judgment's call record, and the backend's transport counters reach ``label``'s run-log
summary and its terminal summary."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("aiohttp")


TEMPLATE = (
    "Question: {{ prompt }}\nFirst: {{ response_a }}\nSecond: {{ response_b }}\n"
    "Which is better? End with [[A]], [[B]] or [[C]] on a line of its own."
)


def test_label_records_attempts_retries_timeouts_per_call_and_in_the_summary(tmp_path, capsys):
    from judge_rl.backends._fakeserver import start_in_thread
    from judge_rl.cli import main
    from judge_rl.runlog import load

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"prompt": f"q {i}", "response_a": f"one {i}", "response_b": f"two {i}"})
            + "\n"
            for i in range(12)
        )
    )
    spec = tmp_path / "judge" / "judge.yaml"
    spec.parent.mkdir()
    (spec.parent / "prompt.j2").write_text(TEMPLATE)
    with start_in_thread(faults={"hang_once": 0.4}, hang_s=3.0) as srv:
        spec.write_text(
            json.dumps(
                {
                    "version": "1", "kind": "pairwise", "backend": "openai",
                    "model": "m", "base_urls": [srv.url], "timeout_s": 1.0,
                    "max_retries": 2, "template": "prompt.j2", "order": "fixed",
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
    assert rc == 0
    label = load(tmp_path / "lab").label
    calls = [c for j in label.judgments for c in j.calls]
    assert len(calls) == 12 and all(j.ok for j in label.judgments)
    for c in calls:
        assert c.attempts is not None and c.attempts == 1 + c.retries
        assert len(c.attempt_latency_s) == c.attempts
        assert c.latency_s == pytest.approx(c.attempt_latency_s[-1])
    hung = [c for c in calls if c.timeouts]
    assert hung, "the fault mix hangs some first attempts"
    assert all(c.attempts >= 2 and c.attempt_latency_s[0] >= 1.0 for c in hung)
    assert all(c.latency_s < 1.0 for c in hung)  # the answering attempt, not the whole call
    transport = label.summary["transport"]
    assert transport["attempts"] == sum(c.attempts for c in calls) >= 12 + len(hung)
    timeouts = sum(c.timeouts for c in calls)
    assert transport["timeouts"] == timeouts >= len(hung)
    assert transport["retries"] == sum(c.retries for c in calls)
    assert transport["endpoints"][0]["attempts"] == transport["attempts"]
    out = capsys.readouterr().out
    assert f"{transport['attempts']} attempts" in out and f"{timeouts} timeouts" in out


def test_calls_without_transport_data_read_as_before():
    """A backend that reports no attempts (mock, hf) leaves the fields out of the record."""
    from judge_rl.backends.mock import MockBackend
    from judge_rl.judge import LLMJudge, compare_sync
    from tests.judge.conftest import make_comparison

    judge = LLMJudge(MockBackend(), TEMPLATE)
    [j] = compare_sync(judge, [make_comparison("a", "bb")])
    call = j.calls[0]
    assert call.attempts is None and call.attempt_latency_s is None
    dumped = call.model_dump()
    assert not {"attempts", "retries", "timeouts", "attempt_latency_s"} & set(dumped)


def test_audit_records_the_transport_of_its_judges(tmp_path, capsys):
    from judge_rl.backends._fakeserver import start_in_thread
    from judge_rl.cli import main
    from tests.conftest import DATA

    spec = tmp_path / "judge" / "judge.yaml"
    spec.parent.mkdir()
    (spec.parent / "prompt.j2").write_text(TEMPLATE)
    with start_in_thread() as srv:
        spec.write_text(
            json.dumps(
                {
                    "version": "1", "kind": "pairwise", "backend": "openai", "model": "m",
                    "base_urls": [srv.url], "template": "prompt.j2", "max_tokens": 16,
                }
            )
        )  # fmt: skip
        rc = main(
            [
                "audit", "--judge", str(spec), "--human", str(DATA / "hh_rlhf_sample.jsonl.gz"),
                "--sample", "6", "--no-injection", "--bootstrap", "20", "--no-cache",
                "--output", str(tmp_path / "aud"),
            ]
        )  # fmt: skip
        requests = sum(srv.state.hits.values())
    assert rc == 0
    log = json.loads((tmp_path / "aud" / "log.json").read_text())
    transport = log["audit"]["transport"]
    assert transport["attempts"] == requests == 12  # 6 pairs, both orders
    assert "transport: 12 attempts, 0 retries, 0 timeouts" in capsys.readouterr().out
