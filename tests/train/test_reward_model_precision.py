"""Reward model: precision (issue 17 item 1), disk use (item 6), and the folder's honesty gaps of
issue 16 item 7: pad != eos scoring under plain transformers, an atomic final save, temp folders
cleaned on resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rm_helpers  # noqa: E402

torch = pytest.importorskip("torch")

from judge_rl.train.precision import float_dtypes  # noqa: E402
from judge_rl.train.reward_model import (  # noqa: E402
    STATE_FILE,
    RewardModelConfig,
    RewardModelScorer,
    latest_checkpoint,
    train_reward_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py


def cfg(out: Path, **kw) -> RewardModelConfig:
    base = dict(
        output=str(out),
        lr=3e-3,
        batch_size=8,
        epochs=1,
        eval_split=0.0,
        eval_every=0,
        save_every=0,
        bf16="off",
        threads=1,
        seed=0,
        max_steps=3,
    )
    base.update(kw)
    return RewardModelConfig(**base)


def bf16_backbone(path: Path) -> Path:
    from judge_rl.models import tiny_causal_lm, tiny_tokenizer

    tok = tiny_tokenizer()
    tiny_causal_lm(tok, hidden_size=32, num_layers=1).to(torch.bfloat16).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_bf16_stored_backbone_trains_with_fp32_master_weights(tmp_path):
    seen = {}

    def hook(ev):
        if ev.kind == "start":
            seen["dtypes"] = float_dtypes(ev.model)
            seen["before"] = {k: v.detach().clone() for k, v in ev.model.named_parameters()}
        if ev.kind == "end":
            m = ev.model
            layers = [
                (n, p) for n, p in m.named_parameters() if "embed" not in n and p.requires_grad
            ]
            moved = sum(int((p != seen["before"][n]).sum()) for n, p in layers)
            seen["moved"] = moved / sum(p.numel() for _, p in layers)

    recs = rm_helpers.planted_records(48)
    train_reward_model(
        cfg(tmp_path / "o", model=str(bf16_backbone(tmp_path / "b")), lr=1e-5),
        records=recs,
        hooks=[hook],
    )
    assert seen["dtypes"] == {torch.float32}  # was bf16: AdamW on bf16 weights
    assert seen["moved"] >= 0.99, seen["moved"]
    meta = json.loads((tmp_path / "o" / "reward_model.json").read_text())
    assert meta["precision"]["dtype"] == "float32"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "out"
    model, tok = rm_helpers.tiny_reward_model()
    assert tok.pad_token_id != tok.eos_token_id  # the case of issue 16 item 7
    recs = rm_helpers.planted_records(48)
    train_reward_model(cfg(out, max_steps=4), records=recs, model=model, tokenizer=tok)
    return out, recs


def test_plain_transformers_snippet_scores_like_judge_rl(trained):
    """The two lines documented in docs/reward_model.md and reward_model.json."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, recs = trained
    meta = json.loads((out / "reward_model.json").read_text())
    assert meta["input_format"]["append_eos"] is True
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    ours = RewardModelScorer(out, device="cpu").score(
        [r.prompt for r in recs[:6]], [r.chosen for r in recs[:6]]
    )
    plain, naive = [], []
    with torch.no_grad():
        for r in recs[:6]:
            # --- the documented snippet ---
            ids = tok(r.prompt + r.chosen)["input_ids"] + (
                [tok.eos_token_id] if meta["input_format"]["append_eos"] else []
            )
            score = model(torch.tensor([ids])).logits[0, 0]
            # ---
            plain.append(float(score))
            naive.append(
                float(model(torch.tensor([tok(r.prompt + r.chosen)["input_ids"]])).logits[0, 0])
            )
    assert plain == pytest.approx(ours, abs=1e-5)
    assert naive != pytest.approx(ours, abs=1e-3)  # without the rule the scores differ


def test_final_save_is_complete_small_and_leaves_no_temp_files(trained):
    out, _ = trained
    assert not list(out.glob(".tmp-*"))
    assert (out / "config.json").exists() and (out / "reward_model.json").exists()
    ck = latest_checkpoint(out)
    state = torch.load(ck / STATE_FILE, weights_only=False)
    assert state["optimizer"] is None  # no optimiser moments in a finished run by default
    # the final model is linked from the checkpoint, not a second copy
    a, b = out / "model.safetensors", ck / "model.safetensors"
    assert a.stat().st_ino == b.stat().st_ino or a.read_bytes() == b.read_bytes()


def test_save_optimizer_keeps_it_and_temp_folders_are_cleaned_on_resume(tmp_path):
    out = tmp_path / "o"
    model, tok = rm_helpers.tiny_reward_model()
    recs = rm_helpers.planted_records(48)
    train_reward_model(
        cfg(out, max_steps=2, save_optimizer=True), records=recs, model=model, tokenizer=tok
    )
    state = torch.load(latest_checkpoint(out) / STATE_FILE, weights_only=False)
    assert state["optimizer"] is not None
    junk_dir = out / ".tmp-checkpoint-3-4242"
    junk_dir.mkdir()
    (junk_dir / "model.safetensors").write_bytes(b"half")
    junk_file = out / ".tmp-model.safetensors-4242"
    junk_file.write_bytes(b"half")
    model, tok = rm_helpers.tiny_reward_model()
    train_reward_model(
        cfg(out, max_steps=2, save_optimizer=True, resume=True),
        records=recs,
        model=model,
        tokenizer=tok,
    )
    assert not junk_dir.exists() and not junk_file.exists()


@pytest.mark.parametrize("var", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_sharding_asked_for_on_cpu_is_a_clear_error(tmp_path, monkeypatch, var):
    """accelerate runs FSDP/DeepSpeed only on accelerators: on CPU it silently fell back to DDP
    (or, without cpu=True, to independent processes that each trained alone)."""
    from judge_rl.errors import ConfigError

    monkeypatch.setenv(var, "true")
    model, tok = rm_helpers.tiny_reward_model()
    with pytest.raises(ConfigError, match="needs GPUs") as e:
        train_reward_model(
            cfg(tmp_path / "o", device="cpu"),
            records=rm_helpers.planted_records(8),
            model=model,
            tokenizer=tok,
        )
    assert e.value.setting == "device"
