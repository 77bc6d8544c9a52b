"""Resuming never unpickles objects from a checkpoint folder (PPO, GRPO, DPO).

A downloaded ``checkpoint-*`` folder is untrusted input: a ``trainer_state.pt`` (or
``optimizer.pt``, ``value.pt``) whose pickle names a function in a ``__reduce__`` ran that
function when ``--resume`` read it with ``weights_only=False``. The planted file here would
create a marker file through ``pathlib.Path.touch``; the resume must refuse with one
ConfigError naming the file (exit 2 at the CLI), and the marker must not appear.
"""

from __future__ import annotations

import enum
import json
import pathlib
import shutil

import pytest
import torch

from judge_rl.errors import ConfigError
from judge_rl.models import tiny_causal_lm, tiny_tokenizer
from judge_rl.train._checkpoint import check_plain, load_trainer_state, save_trainer_state
from judge_rl.train.ppo import OPTIM_FILE, STATE_FILE, VALUE_FILE, PPOConfig, PPOTrainer
from tests.train._payload import TouchOnLoad

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py

PROMPTS = [f"q{i}" for i in range(4)]


def plant(path: pathlib.Path, marker: pathlib.Path) -> None:
    """A state file that looks like a trainer's but carries the payload."""
    torch.save({"step": 1, "epoch": 0, "cursor": 0, "payload": TouchOnLoad(marker)}, path)
    assert not marker.exists()


def ppo_cfg(**kw):
    base = dict(steps=1, batch_size=4, mini_batch_size=4, ppo_epochs=1, max_new_tokens=4,
                device="cpu", seed=0, value_model="head")  # fmt: skip
    base.update(kw)
    return PPOConfig(**base)


def ppo_trainer(**kw) -> PPOTrainer:
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1)
    return PPOTrainer(ppo_cfg(**kw), model, tok, "contains:a", PROMPTS)


@pytest.fixture(scope="module")
def ppo_checkpoint(tmp_path_factory) -> pathlib.Path:
    """A real PPO resume point (policy, value, trainer state, optimiser) after one step."""
    out = tmp_path_factory.mktemp("ppo") / "out"
    tr = ppo_trainer(output=str(out), save_every=1)
    with torch.random.fork_rng():
        tr.train()
    ckpt = out / "checkpoint-000001"
    assert {STATE_FILE, VALUE_FILE, OPTIM_FILE} <= {p.name for p in ckpt.iterdir()}
    return ckpt


def test_what_the_trainer_saves_loads_without_pickle(ppo_checkpoint):
    for name in (STATE_FILE, VALUE_FILE, OPTIM_FILE):
        torch.load(ppo_checkpoint / name, map_location="cpu", weights_only=True)
    state = load_trainer_state(ppo_checkpoint / STATE_FILE)
    assert state["step"] == 1 and isinstance(state["section"], dict)


@pytest.mark.parametrize("name", [STATE_FILE, OPTIM_FILE, VALUE_FILE])
def test_ppo_resume_refuses_a_pickled_payload(tmp_path, ppo_checkpoint, name):
    ckpt = tmp_path / "checkpoint-000001"
    shutil.copytree(ppo_checkpoint, ckpt)
    marker = tmp_path / "pwned"
    plant(ckpt / name, marker)
    with pytest.raises(ConfigError) as e:
        ppo_trainer(output=str(tmp_path / "out"), resume=str(ckpt))
    assert not marker.exists(), "resuming ran code from the checkpoint"
    assert str(ckpt / name) in str(e.value) and "refused" in str(e.value)


def test_ppo_cli_resume_of_a_planted_checkpoint_exits_2(tmp_path, tiny_model_dir, capsys):
    from judge_rl.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    ckpt = tmp_path / "out" / "checkpoint-000001"
    ckpt.mkdir(parents=True)
    marker = tmp_path / "pwned"
    plant(ckpt / STATE_FILE, marker)
    threads = torch.get_num_threads()
    try:
        rc = main(["ppo", "--policy", str(tiny_model_dir), "--reward", "contains:a",
                   "--prompts", str(prompts), "--output", str(tmp_path / "out"), "--resume",
                   "--max-new-tokens", "4", "--batch-size", "4", "--mini-batch-size", "4",
                   "--threads", "1",
                   "--device", "cpu", "--run", str(tmp_path / "run")])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert rc == 2
    assert not marker.exists()
    assert str(ckpt / STATE_FILE) in " ".join(err.split()), err
    assert "Traceback" not in err


def test_grpo_resume_refuses_a_pickled_payload(tmp_path):
    from judge_rl.train.grpo import GRPOConfig, GRPOTrainer

    ckpt = tmp_path / "checkpoint-000001"
    ckpt.mkdir()
    marker = tmp_path / "pwned"
    plant(ckpt / "trainer_state.pt", marker)
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1)
    cfg = GRPOConfig(steps=1, batch_size=2, group_size=2, max_new_tokens=4, device="cpu",
                     output=str(tmp_path / "o"), resume=str(ckpt))  # fmt: skip
    with pytest.raises(ConfigError, match="trainer_state.pt: refused"):
        GRPOTrainer(cfg, model, tok, "contains:a", PROMPTS)
    assert not marker.exists()


def test_dpo_resume_refuses_a_pickled_payload(tmp_path):
    from judge_rl.train.dpo import DPOConfig, DPOTrainer
    from judge_rl.types import PreferenceRecord

    ckpt = tmp_path / "checkpoint-000001"
    ckpt.mkdir()
    marker = tmp_path / "pwned"
    plant(ckpt / "trainer_state.pt", marker)
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1)
    pairs = [PreferenceRecord(prompt=f"p{i}", chosen="a b", rejected="c") for i in range(8)]
    cfg = DPOConfig(epochs=1, batch_size=4, device="cpu", max_length=32, max_prompt_length=16,
                    output=str(tmp_path / "o"), resume=str(ckpt))  # fmt: skip
    with pytest.raises(ConfigError, match="trainer_state.pt: refused"):
        DPOTrainer(cfg, model, tok, pairs)
    assert not marker.exists()


def test_unreadable_state_file_is_a_config_error(tmp_path):
    bad = tmp_path / "trainer_state.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ConfigError, match="trainer_state.pt"):
        load_trainer_state(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_trainer_state(tmp_path / "missing.pt")


def test_save_refuses_state_that_would_not_load_back(tmp_path):
    import numpy as np

    check_plain({"rng": torch.get_rng_state(), "kl": [1.0, (2, "x")], "n": None})
    with pytest.raises(TypeError, match=r"state\['rng'\]: numpy.ndarray"):
        check_plain({"rng": np.zeros(3)})
    with pytest.raises(TypeError, match="PPOConfig"):
        save_trainer_state({"config": ppo_cfg()}, tmp_path / "s.pt")
    assert not (tmp_path / "s.pt").exists()


def test_dpo_reference_cache_with_a_payload_is_recomputed_not_run(tmp_path):
    from judge_rl.train.dpo import REF_CACHE, DPOConfig, DPOTrainer
    from judge_rl.types import PreferenceRecord

    out = tmp_path / "o"
    out.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"key": "x", "logps": TouchOnLoad(marker)}, out / REF_CACHE)
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1)
    pairs = [PreferenceRecord(prompt=f"p{i}", chosen="a b", rejected="c") for i in range(4)]
    cfg = DPOConfig(epochs=1, batch_size=4, device="cpu", max_length=32, max_prompt_length=16,
                    output=str(out))  # fmt: skip
    ref = DPOTrainer(cfg, model, tok, pairs).reference_logps()
    assert ref.shape == (4, 4) and not marker.exists()


class _Stage(enum.IntEnum):
    THREE = 3


class _Name(str):
    __slots__ = ()


def test_check_plain_refuses_subclasses_of_scalars_that_weights_only_refuses(tmp_path):
    """An IntEnum (DeepSpeed's ZeRO stage) or a str subclass passes isinstance(int/str) but is
    pickled by class, so a weights-only load refuses it: the save-time check must refuse it too."""
    for bad in (_Stage.THREE, _Name("x"), {_Name("k"): 1}):
        torch.save({"v": bad}, tmp_path / "raw.pt")
        with pytest.raises(ConfigError):  # what the check must agree with
            load_trainer_state(tmp_path / "raw.pt")
        with pytest.raises(TypeError):
            check_plain({"v": bad})
    check_plain({"v": 3, True: "ok", "f": 1.5, "b": b"x"})
