"""VLLMBackend: clear errors without vLLM or a GPU; the real engine on a GPU machine only."""

from __future__ import annotations

import asyncio
import importlib.util
from types import SimpleNamespace

import pytest

from judge_rl.backends.base import ChatRequest, load_backend
from judge_rl.errors import ConfigError


def _has_vllm_and_gpu() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def test_missing_vllm_or_gpu_is_a_config_error():
    if _has_vllm_and_gpu():
        pytest.skip("vllm and a GPU are present")
    with pytest.raises(ConfigError, match="vllm backend needs"):
        load_backend("vllm", model="embedded")


def test_request_output_to_result_with_label_probs():
    from judge_rl.backends.vllm import to_result

    lp = SimpleNamespace
    logprobs = [
        {7: lp(logprob=0.0, rank=1, decoded_token="[[")},
        {
            1: lp(logprob=-0.3, rank=1, decoded_token="B"),
            2: lp(logprob=-1.5, rank=2, decoded_token="A"),
        },
    ]
    choice = SimpleNamespace(
        text="[[B", finish_reason="length", token_ids=[7, 1], logprobs=logprobs
    )
    out = SimpleNamespace(outputs=[choice], prompt_token_ids=[0] * 12)
    res = to_result(ChatRequest(messages=[], label_probs=["A", "B"]), out)
    assert res.texts == ["[[B"] and res.prompt_tokens == 12 and res.completion_tokens == 2
    assert res.label_probs["B"] > res.label_probs["A"]
    assert sum(res.label_probs.values()) == pytest.approx(1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not _has_vllm_and_gpu(), reason="needs vllm and a CUDA GPU (none in this task)")
def test_vllm_generates_and_gives_label_probs():
    backend = load_backend("vllm", model="embedded", gpu_memory_utilization=0.3, enforce_eager=True)
    msgs = [{"role": "user", "content": "Answer A or B: which is a colour? A: red B: seven"}]
    gen, lab = asyncio.run(
        backend.chat(
            [
                ChatRequest(messages=msgs, max_tokens=8, n=2, temperature=0.8, seed=1),
                ChatRequest(messages=msgs, max_tokens=2, label_probs=["A", "B"]),
            ]
        )
    )
    assert gen.error is None and len(gen.texts) == 2 and gen.completion_tokens > 0
    assert lab.label_probs is not None and sum(lab.label_probs.values()) == pytest.approx(1.0)


class FakeEngine:
    """Stands in for ``vllm.LLM``: records the size of every ``chat`` call."""

    def __init__(self):
        self.calls: list[int] = []

    def chat(self, convs, sampling_params, use_tqdm, add_generation_prompt, continue_final_message):
        self.calls.append(len(convs))
        assert len(sampling_params) == len(convs)
        outs = []
        for msgs in convs:
            text = msgs[-1]["content"]
            verdict = "A" if "alpha" in text.split("B:")[0] else "B"
            choice = SimpleNamespace(
                text=f"Looks right.\n[[{verdict}]]", finish_reason="stop", token_ids=[1, 2],
                logprobs=None,
            )  # fmt: skip
            outs.append(SimpleNamespace(outputs=[choice], prompt_token_ids=[0] * 10))
        return outs


def test_each_chunk_goes_to_the_engine_in_one_call():
    """50 comparisons with order=both: the judge hands the vLLM backend chunks, and each chunk
    is one engine call (before: VLLMBackend had no batch_size, so the judge sent 100 calls of
    one request each, serialised by a lock)."""
    from judge_rl.backends.vllm import VLLMBackend
    from judge_rl.judge import CachedJudge, LLMJudge, OrderedJudge, compare_sync
    from judge_rl.types import Candidate, Comparison

    engine = FakeEngine()
    backend = VLLMBackend("fake", engine=engine, batch_size=64)
    template = "Q: {{ prompt }}\nA: {{ response_a }}\nB: {{ response_b }}\n[[A]] or [[B]]?"
    judge = OrderedJudge(CachedJudge(LLMJudge(backend, template, max_tokens=8), None), "both")
    comps = []
    for i in range(50):
        a = Candidate(prompt_id=f"q{i}", prompt=f"q{i}", response=f"alpha {i}", source="x")
        b = Candidate(prompt_id=f"q{i}", prompt=f"q{i}", response=f"beta {i}", source="y")
        comps.append(Comparison(prompt_id=f"q{i}", prompt=f"q{i}", a=a, b=b))
    js = compare_sync(judge, comps)
    assert all(j.ok for j in js) and {j.winner for j in js} == {"a"}
    assert sum(engine.calls) == 100 and backend.engine_calls == engine.calls
    assert len(engine.calls) <= 2 and max(engine.calls) >= 50, engine.calls


def test_calls_that_arrive_while_the_engine_is_busy_are_coalesced():
    import time

    from judge_rl.backends.vllm import VLLMBackend

    class SlowEngine(FakeEngine):
        def chat(self, convs, **kw):
            time.sleep(0.05)
            return super().chat(convs, **kw)

    engine = SlowEngine()
    backend = VLLMBackend("fake", engine=engine, batch_size=4)
    msgs = [{"role": "user", "content": "A: alpha B: beta"}]

    async def go():
        return await asyncio.gather(
            *(backend.chat([ChatRequest(messages=msgs)] * 4) for _ in range(10))
        )

    out = asyncio.run(go())
    assert [len(r) for r in out] == [4] * 10 and all(x.error is None for r in out for x in r)
    assert sum(engine.calls) == 40 and len(engine.calls) <= 3, engine.calls


@pytest.mark.gpu
@pytest.mark.skipif(not _has_vllm_and_gpu(), reason="needs vllm and a CUDA GPU (none in this task)")
def test_vllm_judges_with_the_embedded_model_in_batches():
    from judge_rl.judge import CachedJudge, LLMJudge, OrderedJudge, compare_sync
    from judge_rl.types import Candidate, Comparison

    backend = load_backend(
        "vllm", model="embedded", gpu_memory_utilization=0.3, enforce_eager=True, batch_size=64
    )
    template = (
        "Question: {{ prompt }}\n[Response A]\n{{ response_a }}\n[Response B]\n{{ response_b }}\n"
        "Which response answers the question? Reply with [[A]] or [[B]] on its own line."
    )
    judge = OrderedJudge(CachedJudge(LLMJudge(backend, template, max_tokens=32), None), "both")
    comps = []
    for i in range(40):
        good, bad = f"{i} + 1 = {i + 1}", "I like turtles."
        a = Candidate(prompt_id=f"q{i}", prompt=f"What is {i} + 1?", response=good, source="x")
        b = Candidate(prompt_id=f"q{i}", prompt=f"What is {i} + 1?", response=bad, source="y")
        comps.append(Comparison(prompt_id=f"q{i}", prompt=a.prompt, a=a, b=b))
    js = compare_sync(judge, comps)
    assert len(js) == 40
    assert len(backend.engine_calls) <= 4 and sum(backend.engine_calls) == 80
    assert sum(j.error is None for j in js) >= 1  # a 135M judge: verdicts, not accuracy


def test_a_second_event_loop_still_gets_answers():
    from judge_rl.backends.vllm import VLLMBackend

    backend = VLLMBackend("fake", engine=FakeEngine(), batch_size=4)
    msgs = [{"role": "user", "content": "A: alpha B: beta"}]
    for _ in range(2):
        [res] = asyncio.run(backend.chat([ChatRequest(messages=msgs)]))
        assert res.error is None and res.text.endswith("[[A]]")
