"""HFBackend: batched left-padded generation and label probabilities from one forward pass."""

from __future__ import annotations

import asyncio

import pytest

from judge_rl.backends.base import ChatRequest
from judge_rl.backends.hf import HFBackend
from judge_rl.errors import ConfigError


@pytest.fixture(scope="module")
def tiny():
    from judge_rl.models import tiny_causal_lm, tiny_tokenizer

    tok = tiny_tokenizer()
    return HFBackend("tiny", model_object=tiny_causal_lm(tok, seed=1), tokenizer=tok, batch_size=4)


def _msg(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_batched_greedy_equals_one_by_one(tiny):
    prompts = ["hi", "a much longer prompt than the first", "mid length one"]
    reqs = [ChatRequest(messages=_msg(p), max_tokens=6) for p in prompts]
    batched = asyncio.run(tiny.chat(reqs))
    alone = [asyncio.run(tiny.chat([r]))[0] for r in reqs]
    for b, a in zip(batched, alone, strict=True):
        assert b.error is None and b.texts == a.texts  # left padding does not change the output
        assert b.completion_tokens <= 6 and b.prompt_tokens == a.prompt_tokens > 0


def test_n_samples_seed_and_stop(tiny):
    req = ChatRequest(messages=_msg("x"), max_tokens=8, temperature=1.0, n=3, seed=7)
    [r1] = asyncio.run(tiny.chat([req]))
    [r2] = asyncio.run(tiny.chat([req]))
    assert len(r1.texts) == 3 and len(r1.finish_reasons) == 3
    assert r1.texts == r2.texts  # same seed, same samples
    greedy = ChatRequest(messages=_msg("x"), max_tokens=8)
    [g] = asyncio.run(tiny.chat([greedy]))
    text = g.texts[0]
    windows = [text[i : i + 2] for i in range(1, len(text) - 1) if "\ufffd" not in text[i : i + 2]]
    if windows:
        stop = windows[0]
        [r3] = asyncio.run(tiny.chat([ChatRequest(messages=_msg("x"), max_tokens=8, stop=[stop])]))
        assert r3.texts == [text[: text.index(stop)]] and r3.finish_reasons == ["stop"]


def test_label_probs_one_forward_pass(tiny):
    import torch

    req = ChatRequest(messages=_msg("Pick A or B"), label_probs=["A", "B", "C"])
    [res] = asyncio.run(tiny.chat([req]))
    assert res.error is None and res.label_probs is not None
    assert sum(res.label_probs.values()) == pytest.approx(1.0)
    assert res.text == max(res.label_probs, key=res.label_probs.get)
    # Same numbers by hand: next-token softmax at the end of the templated prompt.
    tok, lm = tiny.tok, tiny.lm
    ids = tok(tiny.render(req.messages), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        p = torch.softmax(lm(**ids).logits[0, -1], -1)
    mass = {lab: sum(float(p[i]) for i in tiny.label_token_ids([lab])[0]) for lab in "ABC"}
    total = sum(mass.values())
    for lab in "ABC":
        assert res.label_probs[lab] == pytest.approx(mass[lab] / total, rel=1e-4)


def test_label_prefix_moves_the_answer_position(tiny):
    plain = ChatRequest(messages=_msg("q"), label_probs=["A", "B"])
    prefixed = ChatRequest(
        messages=_msg("q"), label_probs=["A", "B"], metadata={"label_prefix": "[["}
    )
    a, b = asyncio.run(tiny.chat([plain, prefixed]))
    assert a.label_probs != b.label_probs
    assert a.prompt_tokens + 2 == b.prompt_tokens  # "[[" is two byte tokens


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown option"):
        HFBackend("embedded", bogus=1)


@pytest.mark.usefixtures("embedded")
def test_embedded_model_prefers_the_right_answer(embedded):
    model, tok = embedded
    backend = HFBackend("embedded", model_object=model, tokenizer=tok)
    q = (
        "Question: What is the capital of France?\nAnswer A: Paris.\nAnswer B: Berlin.\n"
        "Which answer is correct? Reply with the letter A or B only."
    )
    [res, gen] = asyncio.run(
        backend.chat(
            [
                ChatRequest(messages=_msg(q), label_probs=["A", "B"]),
                ChatRequest(
                    messages=_msg("What is 2+3? Reply with the number only."), max_tokens=12
                ),
            ]
        )
    )
    assert res.label_probs["A"] > res.label_probs["B"]
    assert gen.error is None and "5" in gen.texts[0]
