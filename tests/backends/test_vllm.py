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
