"""The reward model's fused rotary embedding (``reward_model.fused_rope``): the same bits as
transformers' ``apply_rotary_pos_emb`` in the forward and in the gradients, and really used in
every forward of training, evaluation and the start-up check (a lever that silently stopped
applying, or changed the maths, fails here)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rm_helpers  # noqa: E402

torch = pytest.importorskip("torch")

from transformers.models.llama import modeling_llama  # noqa: E402

from judge_rl.train import reward_model as rm  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

ORIGINAL = modeling_llama.apply_rotary_pos_emb


def _rope_inputs(heads: int, kv_heads: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    b, t, d = 3, 7, 16
    q = torch.randn(b, heads, t, d, generator=g, dtype=dtype, requires_grad=True)
    k = torch.randn(b, kv_heads, t, d, generator=g, dtype=dtype, requires_grad=True)
    pos = torch.arange(t, dtype=torch.float32)[None].expand(b, -1) + 5
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    freqs = pos[..., None] * inv
    emb = torch.cat([freqs, freqs], -1)
    return q, k, emb.cos().to(dtype), emb.sin().to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("kv_heads", [4, 2], ids=["mha", "gqa"])
def test_fused_rope_is_transformers_rope_bit_for_bit(kv_heads, dtype):
    fused = rm._fused_apply_rotary_pos_emb(ORIGINAL)
    results = []
    for fn in (ORIGINAL, fused):
        q, k, cos, sin = _rope_inputs(4, kv_heads, dtype)
        qe, ke = fn(q, k, cos, sin)
        g = torch.Generator().manual_seed(1)
        gq, gk = torch.randn(qe.shape, generator=g), torch.randn(ke.shape, generator=g)
        torch.autograd.backward([qe, ke], [gq.to(dtype), gk.to(dtype)])
        results.append((qe, ke, q.grad, k.grad))
    for want, got in zip(*results, strict=True):
        assert got.dtype == want.dtype
        assert torch.equal(got, want)


def test_fused_rope_falls_back_where_it_does_not_apply():
    """Differentiable cos/sin (the fused backward gives them no gradient) or mixed dtypes:
    transformers' own expression runs."""
    fused = rm._fused_apply_rotary_pos_emb(ORIGINAL)
    calls = []
    fn = rm._rope_function()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fn, "forward", staticmethod(lambda *a: calls.append(1) or ORIGINAL))
        q, k, cos, sin = _rope_inputs(4, 4)
        cos.requires_grad_(True)
        qe, _ = fused(q, k, cos, sin)
        qe.sum().backward()
        assert cos.grad is not None and not calls
        q, k, cos, sin = _rope_inputs(4, 4)
        fused(q, k, cos.double(), sin.double())
        assert not calls


def _train(tmp: Path, recs, *, shared: bool, fused: bool, checkpointing: bool = False):
    model, tok = rm_helpers.tiny_reward_model(seed=1, hidden_size=32, num_layers=2)
    if checkpointing:
        model.gradient_checkpointing_enable()
    backbone_calls: list[int] = []
    model.model.register_forward_pre_hook(lambda *_: backbone_calls.append(1))
    applied: list[int] = []
    fn = rm._rope_function()
    forward = fn.forward

    def counting(ctx, x, cos, sin):
        # the function's own module attribute is the wrapper while a forward runs
        assert modeling_llama.apply_rotary_pos_emb is not ORIGINAL
        applied.append(1)
        return forward(ctx, x, cos, sin)

    cfg = rm.RewardModelConfig(
        output=str(tmp), lr=1e-3, batch_size=4, epochs=1, max_steps=3, eval_split=0.25,
        eval_every=0, save_every=0, bf16="off", threads=1, log_every=1, seed=0,
        shared_prefix=shared,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fn, "forward", staticmethod(counting))
        if not fused:
            mp.setattr(rm, "fused_rope", lambda _m: contextlib.nullcontext())
        res = rm.train_reward_model(cfg, records=recs, model=model, tokenizer=tok)
    assert modeling_llama.apply_rotary_pos_emb is ORIGINAL  # restored after every block
    return res, model, len(backbone_calls), len(applied)


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize(
    "shared,checkpointing",
    [(False, False), (True, False), (False, True)],
    ids=["joint-batch", "shared-prefix", "checkpointing"],
)
def test_training_with_fused_rope_is_bit_for_bit_the_same(tmp_path, shared, checkpointing):
    recs = rm_helpers.planted_records(22, seed=5)  # 16 training pairs, 6 held out
    ref, ref_model, _, ref_applied = _train(
        tmp_path / "hf", recs, shared=shared, fused=False, checkpointing=checkpointing
    )
    res, model, calls, applied = _train(
        tmp_path / "fused", recs, shared=shared, fused=True, checkpointing=checkpointing
    )
    assert res.section.model_extra["shared_prefix"] is (shared and not checkpointing)
    # the fused function ran for the queries and keys of every layer in every backbone forward
    # (training steps, the held-out evaluation, the shared-prefix start-up check), never without
    # the lever; a checkpointed backward re-runs the layers with transformers' own (same bits)
    assert ref_applied == 0
    assert calls > 3 and applied == 2 * 2 * calls  # (q, k) x 2 layers x forwards
    # the same losses, held-out metrics and weights, bit for bit
    assert [r["loss"] for r in res.section.train] == [r["loss"] for r in ref.section.train]
    assert res.section.evals[-1] == ref.section.evals[-1]
    for (n, p), q in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(p, q), n


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_scoring_uses_the_fused_rope_and_scores_the_same():
    model, _ = rm_helpers.tiny_reward_model(seed=2, hidden_size=32, num_layers=2)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [5, 6, 7, 11, 0, 0]])  # right-padded
    lengths = torch.tensor([6, 4])
    fn = rm._rope_function()
    forward, applied = fn.forward, []
    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(rm, "fused_rope", lambda _m: contextlib.nullcontext())
        want = rm.sequence_rewards(model, ids, lengths)
    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(fn, "forward", staticmethod(lambda *a: applied.append(1) or forward(*a)))
        got = rm.sequence_rewards(model, ids, lengths)
    assert torch.equal(got, want)
    assert len(applied) == 2 * 2  # (q, k) x 2 layers
    # inside the block the module's function is the fused one; re-entrant; restored after
    with rm.fused_rope(model):
        assert modeling_llama.apply_rotary_pos_emb is not ORIGINAL
        outer = modeling_llama.apply_rotary_pos_emb
        with rm.fused_rope(model):  # an inner block changes nothing
            assert modeling_llama.apply_rotary_pos_emb is outer
        assert modeling_llama.apply_rotary_pos_emb is outer
    assert modeling_llama.apply_rotary_pos_emb is ORIGINAL
