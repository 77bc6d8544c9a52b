"""The lean sampling loop (judge_rl/train/_lean_decode.py) on a peft LoRA-wrapped Llama gives
``generate``'s tokens and random draws (the adapters changed so that the delta matters: random
non-zero ``lora_B``), sampled and greedy, left-padded, multi-head and grouped-query attention;
peft settings whose exactness is not tested go to ``generate``."""

from __future__ import annotations

import pytest
import torch

from judge_rl.models import tiny_causal_lm, tiny_tokenizer
from judge_rl.train._lean_decode import lean_decoder
from judge_rl.train.rollout import HFRolloutEngine, encode_prompt, left_pad
from tests.conftest import requires_embedded
from tests.train.test_lean_decode import PROMPTS, both, llama

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py


def lora(model, *, seed=3, **kw):
    """``model`` with LoRA on every linear layer, as PPO's ``--lora-r`` builds it, and random
    non-zero ``lora_B`` (peft starts it at zero: the adapter would change nothing)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM", **kw)
    pm = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return pm.eval()


def base(arch, tok):
    return llama(tok, kv_heads=4 if arch == "mha" else 2)  # output depends on the context


@pytest.mark.parametrize("arch", ["mha", "gqa"])
@pytest.mark.parametrize(("greedy", "temperature"), [(False, 1.0), (False, 0.7), (True, 1.0)])
def test_lora_model_same_tokens_as_generate(arch, greedy, temperature):
    tok = tiny_tokenizer()
    model = lora(base(arch, tok))
    q, qm = left_pad([encode_prompt(tok, p) for p in PROMPTS], tok.pad_token_id)
    assert qm.min() == 0  # left padding present
    with torch.no_grad():  # the adapter changes the model's output
        with_lora = model(input_ids=q, attention_mask=qm).logits
        with model.disable_adapter():
            without = model(input_ids=q, attention_mask=qm).logits
    assert (with_lora - without).abs().max() > 0.1
    for seed in range(3):
        ref, out, r_ref, r_out = both(model, tok, n_new=24, greedy=greedy,
                                      temperature=temperature, seed=seed)  # fmt: skip
        assert out.shape == ref.shape and torch.equal(out, ref), seed
        assert torch.equal(r_out, r_ref)  # the same random numbers drawn


def test_lora_model_top_k_top_p_same_tokens_as_generate():
    tok = tiny_tokenizer()
    model = lora(base("gqa", tok))
    for seed in range(2):
        ref, out, r_ref, r_out = both(model, tok, n_new=24, greedy=False, temperature=0.7,
                                      seed=seed, top_k=10, top_p=0.9)  # fmt: skip
        assert torch.equal(out, ref) and torch.equal(r_out, r_ref), seed


def test_lora_tokens_differ_from_the_base_models():
    """The check above compares against generate on the LoRA model, not on its base."""
    tok = tiny_tokenizer()
    model = lora(base("mha", tok))
    ref, out, _, _ = both(model, tok, n_new=16, greedy=True)
    plain, _, _, _ = both(base("mha", tok), tok, n_new=16, greedy=True)  # same weights, no LoRA
    assert torch.equal(out, ref) and not torch.equal(out, plain)


@pytest.mark.parametrize("greedy", [False, True])
def test_disabled_adapter_the_reference_same_tokens_as_generate(greedy):
    """PPO and GRPO sample the reference of a LoRA policy inside ``disable_adapter()``."""
    tok = tiny_tokenizer()
    model = lora(base("gqa", tok))
    with model.disable_adapter():
        for seed in range(2):
            ref, out, r_ref, r_out = both(model, tok, n_new=20, greedy=greedy, seed=seed)
            assert torch.equal(out, ref) and torch.equal(r_out, r_ref), seed
    plain, _, _, _ = both(base("gqa", tok), tok, n_new=20, greedy=greedy, seed=1)
    on, _, _, _ = both(model, tok, n_new=20, greedy=greedy, seed=1)
    assert torch.equal(out, plain) and not torch.equal(out, on)  # the base model's tokens


def test_engine_takes_the_lean_loop_for_a_lora_policy(monkeypatch):
    tok = tiny_tokenizer()
    model = lora(base("gqa", tok), lora_dropout=0.1)  # dropout: the identity in eval mode
    model.train()  # the engine switches to eval for sampling, and back
    eng = HFRolloutEngine(model, tok, max_new_tokens=16, temperature=0.7)
    q, qm = left_pad([encode_prompt(tok, p) for p in PROMPTS], tok.pad_token_id)
    calls = []
    monkeypatch.setattr(model.get_base_model(), "generate", lambda *a, **k: calls.append(1) / 0)
    torch.manual_seed(0)
    lean = eng.generate(q, qm)
    assert not calls and model.training
    monkeypatch.undo()
    monkeypatch.setenv("JUDGE_RL_LEAN_DECODE", "0")
    torch.manual_seed(0)
    plain = eng.generate(q, qm)
    assert torch.equal(lean.response_ids, plain.response_ids) and lean.texts == plain.texts


def test_peft_settings_that_are_not_tested_go_to_generate():
    from peft import LoraConfig, get_peft_model

    tok = tiny_tokenizer()

    def fresh(**kw):
        return lora(tiny_causal_lm(tok, hidden_size=32, num_layers=1), **kw)

    ok = fresh()
    assert lean_decoder(ok, top_k=0, top_p=1.0) is not None
    ok.train()
    assert lean_decoder(ok, top_k=0, top_p=1.0) is None  # train mode: dropout active
    assert lean_decoder(fresh(use_dora=True), top_k=0, top_p=1.0) is None
    assert lean_decoder(fresh(lora_bias=True), top_k=0, top_p=1.0) is None
    assert lean_decoder(fresh(modules_to_save=["lm_head"]), top_k=0, top_p=1.0) is None
    m = fresh()
    m.merge_adapter()  # merged weights
    assert lean_decoder(m, top_k=0, top_p=1.0) is None
    m.unmerge_adapter()
    assert lean_decoder(m, top_k=0, top_p=1.0) is not None
    m.add_adapter("other", LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
    m.base_model.set_adapter(["default", "other"])  # two active adapters
    m.eval()
    assert lean_decoder(m, top_k=0, top_p=1.0) is None
    m.set_adapter("other")
    m.eval()  # the new adapter's modules were made in train mode
    assert lean_decoder(m, top_k=0, top_p=1.0) is not None
    ia3 = get_peft_model(
        tiny_causal_lm(tok, hidden_size=32, num_layers=1),
        peft.IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"],
                       feedforward_modules=["down_proj"]),
    ).eval()  # fmt: skip
    assert lean_decoder(ia3, top_k=0, top_p=1.0) is None  # another peft method
    emb = get_peft_model(
        tiny_causal_lm(tok, hidden_size=32, num_layers=1),
        LoraConfig(r=2, target_modules=["embed_tokens", "q_proj"], task_type="CAUSAL_LM"),
    ).eval()
    assert lean_decoder(emb, top_k=0, top_p=1.0) is None  # LoRA on the embedding


def test_other_float_types_and_autocast_go_to_generate():
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lean_decoder(model, top_k=0, top_p=1.0) is None
    assert lean_decoder(model.to(torch.bfloat16), top_k=0, top_p=1.0) is None


@pytest.mark.parametrize("adapter", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_group_last_in_prefill_is_the_plain_call_on_the_repeated_prompts(adapter, temperature,
                                                                          monkeypatch):  # fmt: skip
    """``sample(group=K, last_in_prefill=True)`` (GRPO's group rollout for a LoRA policy) draws
    from bit-identical probabilities, step for step, as the plain call on the K-times repeated
    prompts (the LoRA path before), so the same tokens and random numbers."""
    tok = tiny_tokenizer()
    model = lora(base("gqa", tok)) if adapter else base("gqa", tok)
    lean = lean_decoder(model, top_k=0, top_p=1.0)
    q, qm = left_pad([encode_prompt(tok, p) for p in PROMPTS], tok.pad_token_id)
    K, kw = 3, dict(max_new_tokens=16, greedy=False, temperature=temperature,
                    eos=[tok.eos_token_id], pad_id=tok.pad_token_id)  # fmt: skip
    real = torch.multinomial
    runs: list[list[torch.Tensor]] = []

    def recording(probs, *a, **k):
        runs[-1].append(probs.clone())
        return real(probs, *a, **k)

    monkeypatch.setattr(torch, "multinomial", recording)
    outs = []
    for call in (
        lambda: lean.sample(q, qm, group=K, last_in_prefill=True, **kw),
        lambda: lean.sample(q.repeat_interleave(K, 0), qm.repeat_interleave(K, 0), **kw),
    ):
        runs.append([])
        torch.manual_seed(0)
        outs.append((call(), torch.rand(3)))
    (a, r_a), (b, r_b) = outs
    assert torch.equal(a, b) and torch.equal(r_a, r_b)
    assert len(runs[0]) == len(runs[1]) > 1
    assert all(torch.equal(x, y) for x, y in zip(*runs, strict=True))  # bit for bit


@pytest.mark.slow
@requires_embedded
def test_embedded_prefill_of_a_row_does_not_depend_on_the_batch_at_one_thread():
    """``last_in_prefill`` is the plain call's arithmetic when a row's prefill does not depend on
    how many rows run with it. At one thread the embedded model's prefill of G prompts,
    repeated K times, equals bit for bit its prefill of the G*K repeated prompts (logits and
    cache), plain and with LoRA. (At two threads some batch shapes, 5 prompts x 4 among them,
    differ in the last bits: the threads split the rows differently.)"""
    import copy

    from judge_rl.models import load_causal_lm, load_tokenizer
    from judge_rl.train._last_mlp import last_mlp_only
    from judge_rl.train._lean_decode import grow_in_place_cache

    tok, model = load_tokenizer("embedded"), load_causal_lm("embedded")
    prompts = ["What is 12 + 7?", "Write a haiku about the sea, please.", "2+2=", "hi",
               "Name three colours of the rainbow and why it has them."]  # fmt: skip
    q, qm = left_pad([encode_prompt(tok, p) for p in prompts], tok.pad_token_id)
    am = qm.long()
    pos = (am.cumsum(-1) - 1).masked_fill(am == 0, 0)
    K, P = 4, q.shape[1]

    def prefill(lean, rep):
        cache = grow_in_place_cache(lean.model.config, P + 1)
        ids, mask, p = (t.repeat_interleave(rep, 0) for t in (q, am, pos))
        with torch.no_grad(), last_mlp_only(1, lean.model):
            out = lean.model(input_ids=ids, attention_mask=mask, position_ids=p, cache=cache,
                             use_cache=True, logits_to_keep=1)  # fmt: skip
        return out.logits[:, -1], cache

    for m in (copy.deepcopy(model).eval(), lora(copy.deepcopy(model), seed=5)):
        lean = lean_decoder(m, top_k=0, top_p=1.0)
        assert lean is not None
        once, c1 = prefill(lean, 1)
        c1.batch_repeat_interleave(K)
        rep, c2 = prefill(lean, K)
        assert torch.equal(once.repeat_interleave(K, 0), rep)
        for a, b in zip(c1.layers, c2.layers, strict=True):
            assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
