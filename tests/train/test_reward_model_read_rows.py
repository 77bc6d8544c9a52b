"""The reward model's last decoder layer MLP runs only where the head reads (each sequence's last
real token): same losses, weights and scores as the full model, and the other rows really skipped,
in training (plain and shared-prefix layouts, with and without gradient checkpointing), in the
held-out evaluation and in scoring."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rm_helpers  # noqa: E402

torch = pytest.importorskip("torch")

from judge_rl.train import _last_mlp  # noqa: E402
from judge_rl.train.reward_model import (  # noqa: E402
    RewardModelConfig,
    RewardModelScorer,
    train_reward_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")

BATCH = 4


def _down_proj_inputs(model) -> list[tuple[int, ...]]:
    """Shapes of what reaches the last layer's MLP output projection, every call (the
    checkpointed recomputation included): (rows, I) when rows were picked, (N, T, I) when not."""
    seen: list[tuple[int, ...]] = []
    mlp = _last_mlp.last_mlp(model)
    assert mlp is not None
    out = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)][-1]
    out.register_forward_pre_hook(lambda _m, a: seen.append(tuple(a[0].shape)))
    return seen


def _no_skip(_keep, *_models):
    return contextlib.nullcontext()


def _train(tmp: Path, recs, *, shared: bool, checkpointing: bool, skip: bool, monkeypatch):
    model, tok = rm_helpers.tiny_reward_model(seed=1, hidden_size=32, num_layers=2)
    if checkpointing:
        model.gradient_checkpointing_enable()
    seen = _down_proj_inputs(model)
    cfg = RewardModelConfig(
        output=str(tmp),
        lr=1e-3,
        batch_size=BATCH,
        epochs=1,
        max_steps=3,
        eval_split=0.25,
        eval_every=0,
        save_every=0,
        bf16="off",
        threads=1,
        log_every=1,
        seed=0,
        shared_prefix=shared,
    )
    with monkeypatch.context() as mp:
        if not skip:
            mp.setattr(_last_mlp, "last_mlp_only", _no_skip)  # the checkpointed blocks too
        res = train_reward_model(cfg, records=recs, model=model, tokenizer=tok)
    return res, model, seen


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain-backward", "checkpointing"])
@pytest.mark.parametrize("shared", [False, True], ids=["joint-batch", "shared-prefix"])
def test_training_skips_unread_rows_and_learns_the_same(
    tmp_path, monkeypatch, shared, checkpointing
):
    recs = rm_helpers.planted_records(22, seed=5)  # 16 training pairs (4 batches), 6 held out
    ref, ref_model, ref_seen = _train(
        tmp_path / "full", recs, shared=shared, checkpointing=checkpointing, skip=False,
        monkeypatch=monkeypatch,
    )  # fmt: skip
    res, model, seen = _train(
        tmp_path / "skip", recs, shared=shared, checkpointing=checkpointing, skip=True,
        monkeypatch=monkeypatch,
    )  # fmt: skip
    # A checkpointing model shares the prompt too (its layers checkpointed with their cache:
    # tests/train/test_rm_shared_ckpt.py).
    assert res.section.model_extra["shared_prefix"] is shared
    # Same losses step by step, same held-out rewards, same weights after 3 AdamW steps.
    assert [r["loss"] for r in res.section.train] == pytest.approx(
        [r["loss"] for r in ref.section.train], rel=1e-5, abs=1e-6
    )
    for key in ("loss", "chosen_mean", "rejected_mean", "margin"):
        assert res.section.evals[-1][key] == pytest.approx(ref.section.evals[-1][key], abs=1e-5)
    for (n, p), q in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=n)
    # The hook sees the full (N, T, I) rows without the skip...
    assert ref_seen and all(len(s) == 3 for s in ref_seen)
    # ...and with it, only the read rows: two per pair (chosen's and rejected's last token) in
    # training, the recomputation of a checkpointed backward included, and in evaluation; a
    # shared prompt's pass keeps no row (only its keys/values are read), in the checkpointed
    # recomputation too.
    assert not [s for s in seen if len(s) == 3]
    rows = [s[0] for s in seen]
    assert set(rows) <= {0, 2 * BATCH, 2 * 6}  # 6 held-out pairs: one evaluation batch
    assert rows.count(2 * 6) == 1
    passes = 3 * (2 if checkpointing else 1)  # steps x (forward + recomputation)
    if shared:
        # + the start-up check of the shared-prefix forward against the plain one (4 pairs)
        assert rows.count(2 * BATCH) == passes + 2 and rows.count(0) == passes + 1
    else:
        assert rows.count(2 * BATCH) == passes and 0 not in rows


def test_scoring_skips_unread_rows_and_scores_the_same(tmp_path, monkeypatch):
    """RewardModelScorer (also the ``rm:`` reward source's scorer) and the held-out evaluation
    read each sequence's last token: only those rows run the last MLP, same scores."""
    model, tok = rm_helpers.tiny_reward_model(seed=2, hidden_size=32, num_layers=2)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    recs = rm_helpers.planted_records(7, seed=9)
    prompts, responses = [r.prompt for r in recs], [r.chosen for r in recs]
    scorer = RewardModelScorer(tmp_path, device="cpu", batch_size=4)
    seen = _down_proj_inputs(scorer.model)
    got = scorer.score(prompts, responses)
    with monkeypatch.context() as mp:
        mp.setattr(_last_mlp, "last_mlp_only", _no_skip)
        want = scorer.score(prompts, responses)
    assert got == pytest.approx(want, abs=1e-5)
    assert len(set(got)) > 1  # a real model, not a constant
    assert seen[:2] == [(4, 64), (3, 64)]  # batches of 4 and 3: their read rows only
    assert len(seen) == 4 and all(len(s) == 3 for s in seen[2:])  # the reference: every row
