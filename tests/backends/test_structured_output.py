"""``verdict: json`` judges get structured output on OpenAI-compatible servers: the request body
carries the verdict's JSON schema (``response_format``), and the server's JSON reply is read."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("aiohttp")

from judge_rl.backends._fakeserver import start_in_thread, verdict_for  # noqa: E402
from judge_rl.backends.openai import OpenAIBackend  # noqa: E402
from judge_rl.judge.llm import LLMJudge  # noqa: E402
from tests.judge.conftest import make_comparison  # noqa: E402

TEMPLATE = (
    "Q: {{ prompt }}\nA: {{ response_a }}\nB: {{ response_b }}\n"
    'Answer with a JSON object {"reasoning": ..., "verdict": "A" | "B" | "C"}.'
)


def _judge(url: str, verdict, **backend_kw) -> LLMJudge:
    backend = OpenAIBackend("m", base_urls=url, max_retries=0, timeout_s=5, **backend_kw)
    return LLMJudge(backend, TEMPLATE, verdict=verdict, max_tokens=64)


def _compare(judge: LLMJudge, comps):
    async def go():
        try:
            return await judge.compare(comps)
        finally:
            await judge.aclose()

    return asyncio.run(go())


def test_a_json_verdict_judge_sends_the_schema_and_reads_the_json_reply():
    comps = [make_comparison(f"one {i}", f"two {i}", prompt=f"q {i}", i=i) for i in range(6)]
    with start_in_thread() as srv:
        judge = _judge(srv.url, "json")
        js = _compare(judge, comps)
        body = srv.state.last_body
        texts = dict(srv.state.texts)
    rf = body["response_format"]
    assert rf["type"] == "json_schema"
    schema = rf["json_schema"]["schema"]
    assert schema["properties"]["verdict"]["enum"] == ["A", "B", "C"]
    assert schema["required"] == ["reasoning", "verdict"]
    assert judge.fingerprint.params.get("structured_output") is True
    assert all(j.error is None for j in js)
    assert all(j.calls[0].raw.startswith("{") for j in js)
    # each verdict is the letter the server chose for that request's content
    by_text = {t: k for k, t in texts.items()}
    for c, j in zip(comps, js, strict=True):
        key = next(k for t, k in by_text.items() if f"one {c.prompt_id[1:]}" in t)
        assert j.winner == {"A": "a", "B": "b", "C": "tie"}[verdict_for(key)]


@pytest.mark.parametrize(
    ("verdict", "kw"), [("auto", {}), ("json", {"structured_output": False})], ids=str
)
def test_no_schema_without_a_json_verdict_or_with_structured_output_off(verdict, kw):
    with start_in_thread() as srv:
        judge = _judge(srv.url, verdict, **kw)
        js = _compare(judge, [make_comparison("x", "yy")])
        body = srv.state.last_body
    assert "response_format" not in body
    assert "structured_output" not in judge.fingerprint.params
    if verdict == "auto":
        assert js[0].error is None


def test_a_server_rejecting_response_format_fails_with_a_hint_naming_the_setting():
    with start_in_thread(structured_output=False) as srv:
        js = _compare(_judge(srv.url, "json"), [make_comparison("x", "yy")])
        assert srv.state.statuses["400"] == 1  # a 4xx is not retried
    assert js[0].error_kind == "backend"
    assert "HTTP 400" in js[0].error and "structured_output: false" in js[0].error
    with start_in_thread(structured_output=False) as srv:
        js = _compare(
            _judge(srv.url, "json", structured_output=False), [make_comparison("x", "yy")]
        )
        assert srv.state.statuses["200"] == 1 and "400" not in srv.state.statuses
    # answered; the fake's free-text "[[X]]" reply has no JSON verdict: the judge's parse error
    assert js[0].error_kind == "parse"
