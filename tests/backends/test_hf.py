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


# --- one prefill per prompt for n samples (issue 19, "Threads") ------------------------------


def _count_prefill_rows(model):
    """A forward pre-hook counting the prompt rows run with more than one token (prefills) and
    recording whether the model was in train mode at each call."""
    seen = {"rows": 0, "training": []}

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        if ids is not None and ids.shape[1] > 1:
            seen["rows"] += int(ids.shape[0])
        seen["training"].append(module.training)

    return seen, model.register_forward_pre_hook(hook, with_kwargs=True)


def test_n_samples_share_one_prefill_per_prompt():
    """3 prompts x n=4 samples: 3 prompt rows prefilled (``num_return_sequences`` runs 12)."""
    from judge_rl.models import tiny_causal_lm, tiny_tokenizer

    tok = tiny_tokenizer()
    backend = HFBackend("tiny", model_object=tiny_causal_lm(tok, seed=2), tokenizer=tok)
    seen, handle = _count_prefill_rows(backend.lm)
    try:
        reqs = [
            ChatRequest(messages=_msg(p), max_tokens=5, temperature=1.0, n=4, seed=1)
            for p in ("one", "a second prompt", "third")
        ]
        out = asyncio.run(backend.chat(reqs))
    finally:
        handle.remove()
    assert all(r.error is None and len(r.texts) == 4 for r in out)
    assert seen["rows"] == 3 and backend.prefills == 3
    assert len({t for r in out for t in r.texts}) > 1  # samples, not copies


def test_shared_prefill_greedy_equals_separate_prompts(tiny):
    """n greedy samples from one prefill are the greedy answer, n times (the repeated cache
    continues exactly as a fresh prefill does)."""
    [one] = asyncio.run(tiny.chat([ChatRequest(messages=_msg("hello"), max_tokens=6)]))
    [many] = asyncio.run(tiny.chat([ChatRequest(messages=_msg("hello"), max_tokens=6, n=3)]))
    assert many.texts == one.texts * 3 and many.finish_reasons == one.finish_reasons * 3


def test_a_model_in_training_generates_in_eval_mode_and_goes_back():
    """A policy being trained (dropout on) samples in eval mode and is in train mode again
    afterwards."""
    from judge_rl.models import tiny_causal_lm, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, seed=4)
    model.train()
    backend = HFBackend("tiny", model_object=model, tokenizer=tok)
    seen, handle = _count_prefill_rows(model)
    try:
        gen, probs = asyncio.run(
            backend.chat(
                [
                    ChatRequest(messages=_msg("q"), max_tokens=3, n=2, temperature=1.0),
                    ChatRequest(messages=_msg("q"), label_probs=["A", "B"]),
                ]
            )
        )
    finally:
        handle.remove()
    assert gen.error is None and probs.error is None
    assert seen["training"] and not any(seen["training"])
    assert model.training


def test_policy_prompt_format_is_the_trainers_encoding():
    """``prompt_format="policy"`` encodes prompts as the RL trainer does (encode_prompt); with a
    chat template that is the same as the chat format, without one it is the raw prompt (the
    chat format writes plain 'user:' turns)."""
    from judge_rl.models import tiny_causal_lm, tiny_tokenizer
    from judge_rl.train.rollout import encode_prompt

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, seed=1)
    chat = HFBackend("t", model_object=model, tokenizer=tok)
    policy = HFBackend("t", model_object=model, tokenizer=tok, prompt_format="policy")
    for text in ("What is 2+3?", "  spaces\nand lines ", "h\u00e9llo"):
        ids = encode_prompt(tok, text)
        assert chat.prompt_ids(_msg(text)) == policy.prompt_ids(_msg(text)) == ids
    system = [{"role": "system", "content": "Be brief."}, *_msg("hi")]
    assert policy.prompt_ids(system) == chat.prompt_ids(system) == encode_prompt(tok, system)

    plain = tiny_tokenizer()
    plain.chat_template = None
    chat = HFBackend("t", model_object=model, tokenizer=plain)
    policy = HFBackend("t", model_object=model, tokenizer=plain, prompt_format="policy")
    assert policy.prompt_ids(_msg("2+3?")) == encode_prompt(plain, "2+3?")
    assert plain.decode(chat.prompt_ids(_msg("2+3?"))) == "user: 2+3?\nassistant: "
    with pytest.raises(ConfigError, match="prompt format"):
        HFBackend("t", model_object=model, tokenizer=tok, prompt_format="raw")
