"""Reward-model checkpoints are read without running pickle code from the files.

A checkpoint folder may come from anywhere (a download, a shared disk): resuming from it, or
scoring with the model in it, must never execute what the files' pickles ask for.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rm_helpers  # noqa: E402

from tests.train._payload import TouchOnLoad  # noqa: E402

torch = pytest.importorskip("torch")

from judge_rl.errors import ConfigError  # noqa: E402
from judge_rl.train.reward_model import (  # noqa: E402
    STATE_FILE,
    RewardModelConfig,
    RewardModelScorer,
    latest_checkpoint,
    load_reward_model,
    train_reward_model,
)


def _cfg(out: Path, **kw) -> RewardModelConfig:
    base = dict(
        output=str(out),
        lr=3e-3,
        batch_size=8,
        eval_split=0.2,
        eval_every=0,
        save_every=1,
        max_steps=2,
        bf16="off",
        threads=1,
        seed=0,
    )
    base.update(kw)
    return RewardModelConfig(**base)


def _trained(out: Path, recs) -> Path:
    model, tok = rm_helpers.tiny_reward_model()
    train_reward_model(_cfg(out), records=recs, model=model, tokenizer=tok)
    ck = latest_checkpoint(out)
    assert ck is not None and ck.name == "checkpoint-2"
    return ck


def _plant(ck: Path, marker: Path) -> None:
    """Replace the checkpoint's trainer state with one that holds the malicious object (in
    torch.save's own zip format, as a tampered download would be)."""
    state = torch.load(ck / STATE_FILE, map_location="cpu", weights_only=True)
    state["scheduler"]["evil"] = TouchOnLoad(marker)
    torch.save(state, ck / STATE_FILE)


def test_saved_trainer_state_loads_without_pickle(tmp_path):
    """What the trainer writes is plain data (tensors, numbers, strings, lists, dicts)."""
    ck = _trained(tmp_path / "o", rm_helpers.planted_records(40, seed=4))
    state = torch.load(ck / STATE_FILE, map_location="cpu", weights_only=True)
    assert state["step"] == 2 and isinstance(state["section"], dict)
    assert state["optimizer"] is None  # the final checkpoint keeps no optimiser state
    first = torch.load(
        tmp_path / "o" / "checkpoint-1" / STATE_FILE, map_location="cpu", weights_only=True
    )
    assert first["optimizer"]["state"]  # an intermediate one does, loadable too


def test_resume_from_malicious_state_file_is_refused(tmp_path):
    recs = rm_helpers.planted_records(40, seed=4)
    ck = _trained(tmp_path / "o", recs)
    marker = tmp_path / "pwned"
    _plant(ck, marker)
    with pytest.raises(ConfigError, match=STATE_FILE) as e:
        train_reward_model(_cfg(tmp_path / "o", max_steps=3, resume=True), records=recs)
    assert str(ck / STATE_FILE) in str(e.value) and "Unsupported global" in str(e.value)
    assert not marker.exists(), "resuming ran code from the checkpoint's pickle"


def test_cli_resume_from_malicious_state_file_exits_2(cli, tmp_path):
    from judge_rl.data import write_preferences

    recs = rm_helpers.planted_records(40, seed=4)
    data = tmp_path / "pairs.jsonl"
    write_preferences(recs, data)
    ck = _trained(tmp_path / "o", recs)
    marker = tmp_path / "pwned"
    _plant(ck, marker)
    r = cli(
        "train-rm",
        "--data",
        str(data),
        "--model",
        str(ck),
        "--output",
        str(tmp_path / "o"),
        "--resume",
        "--batch-size",
        "8",
        "--max-steps",
        "3",
        "--save-every",
        "1",
        "--eval-split",
        "0.2",
        "--threads",
        "1",
        "--bf16",
        "off",
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert STATE_FILE in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists(), "resuming ran code from the checkpoint's pickle"


def test_reward_model_folder_with_malicious_weights_is_refused(tmp_path):
    """``rm:FOLDER`` / ``score``: a folder whose weights are a pickle (``pytorch_model.bin``)
    is read without running its code (transformers' weights-only load), and the refusal is
    one ConfigError naming the folder."""
    from judge_rl.train.reward_sources import make_reward_source
    from judge_rl.train.rewards import RewardQuery

    folder = rm_helpers.save_tiny_reward_backbone(tmp_path / "rm")
    sd = {k: v.clone() for k, v in rm_helpers.tiny_reward_model()[0].state_dict().items()}
    sd["evil"] = TouchOnLoad(tmp_path / "pwned")  # type: ignore[assignment]
    (folder / "model.safetensors").unlink()
    torch.save(sd, folder / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="Unsupported global") as e:
        RewardModelScorer(folder, device="cpu")
    assert str(folder) in str(e.value)
    src = make_reward_source(f"rm:{folder}")
    with pytest.raises(ConfigError, match="Unsupported global") as e:
        src([RewardQuery(prompt="Q: a\nA:", response=" b", prompt_id="p0")])
    assert str(folder) in str(e.value)
    with pytest.raises(ConfigError, match="Unsupported global"):  # --model FOLDER, --resume
        load_reward_model(str(folder))
    assert not (tmp_path / "pwned").exists(), "loading the reward model ran pickle code"
