"""The reward model's shared-prefix forward under gradient checkpointing: each pair's prompt runs
once (not once per side), the backward recomputes the checkpointed layers (the prefix pass, then
the suffix pass), and the rewards, losses and gradients are the plain layout's without
checkpointing. Before, a checkpointing model fell back to the plain layout (each pair's prompt ran
twice): transformers drops a checkpointed layer's cache, so the suffixes found no prefix
keys/values. What still cannot share (a transformers whose layers do not checkpoint themselves,
``shared_prefix=False``) keeps the plain layout."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rm_helpers  # noqa: E402

torch = pytest.importorskip("torch")

from judge_rl.train import _shared_prompt  # noqa: E402
from judge_rl.train.reward_model import (  # noqa: E402
    RewardModelConfig,
    _Trainer,
    sequence_rewards,
    shared_prefix_rewards,
    train_reward_model,
)
from judge_rl.train.rm_data import (  # noqa: E402
    common_prefix_len,
    pad_right,
    shared_prefix_tensors,
    tokenize_pairs,
)
from tests.conftest import requires_embedded  # noqa: E402
from tests.train.test_grpo_lora_logprobs import count_recomputes  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

B = 4  # pairs per step


def rm_model(arch: str, seed: int = 3):
    """A tiny Llama reward model (2 layers, 4 query heads; MHA: 4 key/value heads, GQA: 2)."""
    from transformers import LlamaForSequenceClassification

    model, tok = rm_helpers.tiny_reward_model(seed=seed, hidden_size=32, num_layers=2)
    if arch == "gqa":
        cfg = model.config
        cfg.num_key_value_heads = 2
        torch.manual_seed(seed)
        model = LlamaForSequenceClassification(cfg)
    assert model.config.num_key_value_heads == (4 if arch == "mha" else 2)
    return model, tok


def checkpointing(model):
    model.gradient_checkpointing_enable()
    model.train()
    return model


@pytest.mark.parametrize("arch", ["mha", "gqa"])
def test_checkpointed_shared_rewards_and_gradients_equal_the_plain_ones(arch):
    """shared_prefix_rewards on a checkpointing model in training: the rewards and every
    parameter's gradient equal sequence_rewards' on a copy without checkpointing, and the
    backward recomputed the layers twice (prefix pass, suffix pass)."""
    ref, tok = rm_model(arch)
    model = checkpointing(copy.deepcopy(ref))
    ref.train()
    pairs = tokenize_pairs(rm_helpers.planted_records(6, seed=8), tok, max_length=256)
    c, r = pairs.chosen, pairs.rejected

    ids, lengths = pad_right(c + r, tok.pad_token_id)
    plain = sequence_rewards(ref, ids, lengths)
    (plain[:6] - plain[6:]).pow(2).sum().backward()

    n = count_recomputes(model)
    prefix, _, suffix, slen, mask, pos = shared_prefix_tensors(c, r, tok.pad_token_id)
    assert prefix.shape[1] > 10 and suffix.shape[1] < ids.shape[1]  # the prompt is shared
    sc, sr = shared_prefix_rewards(model, prefix, suffix, slen, mask, pos)
    torch.testing.assert_close(sc, plain[:6].detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sr, plain[6:].detach(), atol=1e-5, rtol=1e-5)
    assert n == {"forward": 2, "backward": 0}
    (sc - sr).pow(2).sum().backward()
    assert n["backward"] == 2  # each pass's layers recomputed
    assert all(m.gradient_checkpointing for m in model.model.layers)  # flags restored
    assert model.is_gradient_checkpointing
    for (name, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        scale = float(q.grad.abs().max())
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5 * max(scale, 1.0), rtol=1e-4,
                                   msg=name)  # fmt: skip
    assert float(model.model.layers[0].self_attn.v_proj.weight.grad.abs().max()) > 0


def trainer(tmp: Path, model, tok, recs, **kw) -> _Trainer:
    settings = dict(output=str(tmp), lr=3e-3, batch_size=B, max_steps=3, eval_split=0.0,
                    eval_every=0, save_every=0, bf16="off", threads=1, seed=0)  # fmt: skip
    settings.update(kw)
    tr = _Trainer(RewardModelConfig(**settings), recs, model, tok, [], None, None)
    tr.model.train()
    return tr


def body_inputs(model):
    """(rows, positions) of each body forward with gradients on (not the backward's
    recomputations, nor the no-grad first-use check)."""
    seen: list[tuple[int, int]] = []

    def hook(_m, a, k):
        ids = a[0] if a else k.get("input_ids")
        if torch.is_grad_enabled() and torch._C._current_graph_task_id() == -1:
            seen.append(tuple(ids.shape))

    model.model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def steps(tr, n: int = 3):
    """``n`` optimizer steps; per step its metrics and the (prefix width, suffix width, plain
    width) of its pairs."""
    out = []
    for s in range(n):
        idx = tr._step_batches(s)[0]
        c = [tr.train.chosen[i] for i in idx]
        r = [tr.train.rejected[i] for i in idx]
        k = [common_prefix_len(x, y) for x, y in zip(c, r, strict=True)]
        tp = max(k)
        ts = max(max(len(x), len(y)) - j for x, y, j in zip(c, r, k, strict=True))
        t = max(max(len(x), len(y)) for x, y in zip(c, r, strict=True))
        out.append((tr.train_step(), (tp, ts, t)))
    return out


@pytest.mark.parametrize("arch", ["mha", "gqa"])
def test_checkpointed_training_shares_the_prompt_and_equals_plain_training(tmp_path, arch):
    """Three steps of the trainer on a checkpointing model: the shared layout is used (each
    step's body runs the B prompts once and the 2B suffixes, not 2B whole sequences), every
    step's backward recomputes both passes' layers, and the losses, accuracies, gradient norms
    and final weights equal three plain steps without checkpointing."""
    recs = rm_helpers.planted_records(12, seed=5)
    ref_model, tok = rm_model(arch)
    start = copy.deepcopy(ref_model)
    model = checkpointing(copy.deepcopy(ref_model))

    tr = trainer(tmp_path / "shared", model, tok, recs)
    assert tr.shared_ok is True
    seen, n = body_inputs(model), count_recomputes(model)
    got = steps(tr)
    want_shapes = []
    for _, (tp, ts, t) in got:
        assert tp > 0 and tp + ts >= t
        want_shapes += [(B, tp), (2 * B, ts)]  # prompt positions: B*tp a step, not 2B*tp
    assert seen == want_shapes
    assert n["backward"] == 2 * 3  # prefix and suffix passes, every step

    ref = trainer(tmp_path / "plain", ref_model, tok, recs, shared_prefix=False)
    assert ref.shared_ok is False
    ref_seen = body_inputs(ref_model)
    want = steps(ref)
    assert ref_seen == [(2 * B, t) for _, (_, _, t) in want]
    for (a, _), (b, _) in zip(got, want, strict=True):
        for key in ("loss", "accuracy", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    # AdamW's first steps move each weight by about lr whatever its gradient's size, so the
    # two layouts' float-order differences in a near-zero gradient show up as up to ~1e-2 * lr
    # in a few weights (the same without checkpointing); a wrong gradient moves many by ~lr
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
    # against the shared layout without checkpointing: the same arithmetic
    same_model = copy.deepcopy(start)
    same = trainer(tmp_path / "same", same_model, tok, recs)
    assert same.shared_ok is True and not same_model.is_gradient_checkpointing
    steps(same)
    for (name, p), q in zip(model.named_parameters(), same_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")


def test_plain_layout_under_checkpointing_recomputes_once(tmp_path):
    """The counter's control: ``shared_prefix=False`` on a checkpointing model runs the plain
    (2B, T) layout, and its backward recomputes the layers once a step."""
    recs = rm_helpers.planted_records(12, seed=5)
    model, tok = rm_model("gqa")
    tr = trainer(tmp_path, checkpointing(model), tok, recs, shared_prefix=False, max_steps=2)
    assert tr.shared_ok is False
    seen, n = body_inputs(model), count_recomputes(model)
    got = steps(tr, 2)
    assert seen == [(2 * B, t) for _, (_, _, t) in got]
    assert n["backward"] == 2


def test_transformers_without_self_checkpointing_layers_falls_back(tmp_path, monkeypatch):
    """A transformers whose model checkpoints in its layer loop (no GradientCheckpointingLayer)
    cannot pass the cache through a checkpointed layer: a checkpointing model trains on the plain
    layout there; a model without checkpointing still shares."""
    recs = rm_helpers.planted_records(12, seed=5)
    monkeypatch.setattr(_shared_prompt, "_layer_class", lambda: None)
    assert not _shared_prompt.shares_under_checkpointing()
    model, tok = rm_model("gqa")
    tr = trainer(tmp_path / "a", checkpointing(copy.deepcopy(model)), tok, recs)
    assert tr.shared_ok is False
    tr = trainer(tmp_path / "b", model, tok, recs)
    assert tr.shared_ok is True


def test_config_turns_checkpointing_on_and_shares(tmp_path):
    """``RewardModelConfig(gradient_checkpointing=True)``: the model checkpoints (non-reentrant),
    the backward recomputes, and the run still uses the shared-prefix layout."""
    recs = rm_helpers.planted_records(12, seed=5)
    model, tok = rm_model("gqa")
    assert not model.is_gradient_checkpointing
    n = count_recomputes(model)
    cfg = RewardModelConfig(output=str(tmp_path), batch_size=B, max_steps=2, eval_split=0.0,
                            eval_every=0, save_every=0, bf16="off", threads=1, seed=0,
                            gradient_checkpointing=True)  # fmt: skip
    res = train_reward_model(cfg, records=recs, model=model, tokenizer=tok)
    assert model.is_gradient_checkpointing
    assert res.section.model_extra["shared_prefix"] is True
    assert n["backward"] == 2 * 2


@requires_embedded
@pytest.mark.slow
def test_embedded_backbone_shares_under_checkpointing(tmp_path):
    """SmolLM2-135M with a fresh scalar head (GQA, 30 layers): the first-use check passes with
    gradient checkpointing on, and the shared forward's rewards and gradients (first and last
    layers' key/value and MLP weights, the head) equal the plain layout's without it."""
    from judge_rl.train.reward_model import load_reward_model

    ref, tok = load_reward_model("embedded", seed=0)
    recs = rm_helpers.planted_records(3, seed=2)  # prompts of different lengths
    pairs = tokenize_pairs(recs, tok, max_length=256)
    c, r = pairs.chosen, pairs.rejected
    model = checkpointing(copy.deepcopy(ref))
    ref.train()
    ids, lengths = pad_right(c + r, tok.pad_token_id)
    plain = sequence_rewards(ref, ids, lengths)
    (plain[:3] - plain[3:]).pow(2).sum().backward()
    n = count_recomputes(model)
    prefix, _, suffix, slen, mask, pos = shared_prefix_tensors(c, r, tok.pad_token_id)
    sc, sr = shared_prefix_rewards(model, prefix, suffix, slen, mask, pos)
    torch.testing.assert_close(torch.cat([sc, sr]), plain.detach(), atol=1e-4, rtol=1e-4)
    (sc - sr).pow(2).sum().backward()
    assert n["backward"] == 2
    last = len(model.model.layers) - 1
    names = [f"model.layers.{i}.{m}.weight" for i in (0, last)
             for m in ("self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj")] + ["score.weight"]  # fmt: skip
    got, want = dict(model.named_parameters()), dict(ref.named_parameters())
    for name in names:
        scale = float(want[name].grad.abs().max())
        assert scale > 0, name
        torch.testing.assert_close(got[name].grad, want[name].grad, atol=1e-4 * scale,
                                   rtol=1e-3, msg=lambda m, n=name: f"{n}: {m}")  # fmt: skip
    tr = trainer(tmp_path, model, tok, rm_helpers.planted_records(12, seed=5))
    assert tr.shared_ok is True and model.is_gradient_checkpointing
