"""The last decoder layer's MLP on the read positions only: exact where read, skipped elsewhere."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from judge_rl.models import tiny_causal_lm, tiny_reward_model, tiny_tokenizer
from judge_rl.train._last_mlp import last_mlp, last_mlp_only

pytestmark = pytest.mark.usefixtures("one_thread")


def _rows_through(mlp: nn.Module) -> list[int]:
    """Counts the rows that reach the MLP's last linear layer (forward calls, recomputation
    included)."""
    seen: list[int] = []
    out = [m for m in mlp.modules() if isinstance(m, nn.Linear)][-1]
    out.register_forward_pre_hook(lambda _m, a: seen.append(a[0].shape[:-1].numel()))
    return seen


def _lm_step(model: nn.Module, ids: torch.Tensor, keep: int) -> tuple[torch.Tensor, list]:
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits  # (B, keep, V)
    (logits.float().log_softmax(-1)[..., 7].sum()).backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_tail_keep_gives_the_same_logits_and_gradients_and_skips_the_other_rows(checkpointing):
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=64, num_layers=3, seed=0)
    if checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    torch.manual_seed(1)
    ids = torch.randint(10, 200, (3, 20))  # (B, T)
    keep = 6
    ref_logits, ref_grads = _lm_step(model, ids, keep)
    rows = _rows_through(last_mlp(model))
    attn = model.model.layers[-1].self_attn
    computed: dict[str, list[int]] = {"q": [], "o": [], "k": []}  # rows with a nonzero output
    for name, proj in (("q", attn.q_proj), ("o", attn.o_proj), ("k", attn.k_proj)):
        proj.register_forward_hook(
            lambda _m, a, out, name=name: computed[name].append(
                int(out.abs().sum(-1).gt(0).sum(-1).max())
            )
        )
    with last_mlp_only(keep, model):
        logits, grads = _lm_step(model, ids, keep)
    assert "forward" not in vars(last_mlp(model))  # restored after the block
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert len(grads) == len(ref_grads)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    # every pass through the last MLP (the recomputation too) saw only B x keep rows
    assert rows and all(n == 3 * keep for n in rows)
    # the query and output projections too; keys see every position (the kept rows attend to them)
    assert set(computed["q"]) == set(computed["o"]) == {keep}
    assert set(computed["k"]) == {20}


def test_the_other_positions_are_not_the_models():
    """The skipped positions' final hidden states differ from the model's: they must not be read
    (this is what the block trades for speed; the test fails if nothing is skipped)."""
    model = tiny_causal_lm(tiny_tokenizer(), hidden_size=64, num_layers=2, seed=0).eval()
    ids = torch.randint(10, 200, (2, 12))
    with torch.no_grad():
        full = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        with last_mlp_only(4, model):
            part = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(part[:, -4:], full[:, -4:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(part[:, :-4], full[:, :-4], atol=1e-3)


def test_row_mask_reads_the_reward_models_last_token_exactly():
    tok = tiny_tokenizer()
    rm = tiny_reward_model(tok, hidden_size=64, num_layers=2, seed=3).train()
    rm.config.pad_token_id = tok.pad_token_id
    ids = torch.randint(10, 200, (3, 15))
    lengths = torch.tensor([15, 9, 12])
    am = (torch.arange(15)[None, :] < lengths[:, None]).long()  # right padding
    ids = torch.where(am.bool(), ids, torch.full_like(ids, tok.pad_token_id))
    read = torch.zeros(3, 15, dtype=torch.bool)
    read[torch.arange(3), lengths - 1] = True

    def step() -> tuple[torch.Tensor, list]:
        rm.zero_grad(set_to_none=True)
        s = rm(input_ids=ids, attention_mask=am).logits.squeeze(-1)  # (B,)
        (s * torch.tensor([1.0, -2.0, 0.5])).sum().backward()
        return s.detach(), [p.grad.clone() for p in rm.parameters() if p.grad is not None]

    ref_s, ref_g = step()
    rows = _rows_through(last_mlp(rm))
    with last_mlp_only(read, rm):
        s, g = step()
    torch.testing.assert_close(s, ref_s, rtol=1e-5, atol=1e-5)
    for a, b in zip(g, ref_g, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert rows == [3]


def test_other_layouts_and_empty_keeps_run_unchanged():
    seq = nn.Sequential(nn.Linear(4, 4))
    assert last_mlp(seq) is None
    with last_mlp_only(2, seq, None):
        assert seq(torch.ones(1, 4)).shape == (1, 4)
    model = tiny_causal_lm(tiny_tokenizer(), hidden_size=32, num_layers=1, seed=0)
    for keep in (None, 0):
        with last_mlp_only(keep, model):
            assert "forward" not in vars(last_mlp(model))
    with last_mlp_only(3, model, model):  # the same model twice, and nested: patched once
        inner = vars(last_mlp(model))["forward"]
        with last_mlp_only(5, model):
            assert vars(last_mlp(model))["forward"] is inner
    assert "forward" not in vars(last_mlp(model))


def test_rollout_prefill_skips_the_prompt_rows_and_samples_the_same_tokens():
    from judge_rl.train.rollout import HFRolloutEngine, left_pad, sampling_config

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=64, num_layers=2, seed=0).eval()
    eng = HFRolloutEngine(model, tok, max_new_tokens=8)
    q, qm = left_pad([list(range(10, 22)), list(range(30, 37))], int(tok.pad_token_id))  # (2, 12)
    rows = _rows_through(last_mlp(model))
    torch.manual_seed(5)
    got = eng.generate(q, qm).response_ids
    assert rows[0] == 2  # the prefill: one row per prompt, not 2 x 12
    cfg = sampling_config(8, False, 1.0, 0, 1.0, eng.pad_id, eng.eos)
    torch.manual_seed(5)
    with torch.no_grad():
        plain = model.generate(input_ids=q, attention_mask=qm, generation_config=cfg)
    ref = plain[:, q.shape[1] :]  # (2, R)
    assert torch.equal(got, ref[:, : got.shape[1]])


def _passes(model: nn.Module) -> list[list[int]]:
    """Each call of the decoder body as [rows into the body (B x T), rows into the last layer's
    MLP], in call order (every body call passes through the last MLP once; the lean sampling
    loop's decoding steps call the layers without the body and are not counted)."""
    calls: list[list[int]] = []
    model.model.register_forward_pre_hook(
        lambda _m, a, k: calls.append([k["input_ids"].numel()]), with_kwargs=True
    )
    out = [m for m in last_mlp(model).modules() if isinstance(m, nn.Linear)][-1]
    out.register_forward_pre_hook(
        lambda _m, a: calls[-1].append(a[0].shape[:-1].numel()) if len(calls[-1]) == 1 else None
    )
    return calls


@pytest.mark.parametrize("shared", [True, False])
def test_dpo_passes_skip_the_unread_rows(shared):
    from judge_rl.train.dpo import DPOConfig, DPOTrainer
    from tests.train.test_dpo import planted

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=2, seed=0)
    cfg = DPOConfig(beta=0.1, lr=1e-3, max_steps=1, batch_size=8, eval_fraction=0.0,
                    device="cpu", shared_prompt=shared)  # fmt: skip
    tr = DPOTrainer(cfg, model, tok, planted(16))
    calls = _passes(model)
    tr.train()
    assert tr._shared is shared and calls
    if shared:  # the prompt pass keeps one row per pair (B x P in, B rows kept)
        kept = {m for b, m in calls if m < b and b % m == 0}
        assert {8, 16} <= kept  # the training step's 8 pairs; the reference pass's 16
    else:  # every pass: the response positions only
        assert all(m < b for b, m in calls)


@pytest.mark.parametrize("shared", [True, False])
def test_grpo_passes_skip_the_unread_rows(shared):
    from judge_rl.train.grpo import GRPOConfig, GRPOTrainer

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=2, seed=0)
    cfg = GRPOConfig(steps=1, batch_size=2, group_size=4, epochs=1, lr=1e-3, max_new_tokens=6,
                     device="cpu", seed=0, shared_prompt=shared)  # fmt: skip
    tr = GRPOTrainer(cfg, model, tok, "contains:a", [f"question {i} here" for i in range(4)])
    calls = _passes(model)
    tr.train()
    assert tr._shared is shared
    sampling = [c for c in calls if c[0] <= 8]  # decoding steps: 8 samples x 1 position
    assert all(m == b for b, m in sampling)
    assert any(m < b for b, m in calls if b > 8)  # the training passes skip rows


def test_read_rows_block_under_gradient_checkpointing():
    """``read_rows_block`` (the one helper PPO, GRPO and DPO use): with gradients on and a
    checkpointing model, a block around the forward alone does nothing (the backward re-runs
    the forward outside it); around forward and backward (``covers_backward``) and without
    gradients it skips the rows. The gradients are the full forward's every time."""
    from judge_rl.train._last_mlp import checkpoints_activations, read_rows_block

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=64, num_layers=2, seed=0)
    assert not checkpoints_activations(model)
    model.gradient_checkpointing_enable()
    model.train()
    assert checkpoints_activations(model)
    ids = torch.randint(10, 200, (3, 20))  # (B, T)
    keep = 5
    ref_logits, ref_grads = _lm_step(model, ids, keep)
    rows = _rows_through(last_mlp(model))

    def check(logits, grads):
        torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)

    model.zero_grad(set_to_none=True)
    with read_rows_block(keep, model):  # forward only: a no-op here
        logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
    logits.float().log_softmax(-1)[..., 7].sum().backward()
    check(logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert rows and all(n == 3 * 20 for n in rows)  # forward and recomputation: every row
    rows.clear()
    with read_rows_block(keep, model, covers_backward=True):
        check(*_lm_step(model, ids, keep))
    assert rows and all(n == 3 * keep for n in rows)
    rows.clear()
    with torch.no_grad(), read_rows_block(keep, model):
        logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert rows == [3 * keep]
