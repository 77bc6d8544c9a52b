"""The PPO trainer on a toy task with a tiny config-built model (judge_rl/train/ppo.py)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from judge_rl.models import tiny_causal_lm, tiny_tokenizer
from judge_rl.train.callbacks import Samples
from judge_rl.train.ppo import PPOConfig, PPOTrainer
from judge_rl.train.reward_sources import make_reward_source
from judge_rl.types import PromptItem
from tests.conftest import requires_embedded

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py


def toy(seed: int = 0, **kw):
    """The toy task: reward 1 when the response contains 'a' (3-6% of random responses)."""
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1, seed=seed)
    cfg = dict(
        steps=16,
        batch_size=32,
        mini_batch_size=16,
        ppo_epochs=4,
        lr=1e-2,
        kl_coef=0.01,
        max_new_tokens=12,
        value_model="head",
        device="cpu",
        seed=seed,
    )
    cfg.update(kw)
    prompts = [f"q{i}" for i in range(32)]
    return PPOConfig(**cfg), model, tok, make_reward_source("contains:a"), prompts


def test_toy_reward_rises_and_kl_stays_finite():
    cfg, model, tok, reward, prompts = toy()
    ref_state = copy.deepcopy(model.state_dict())
    section = PPOTrainer(cfg, model, tok, reward, prompts).train()
    steps = section.steps
    assert len(steps) == 16 and [int(s["step"]) for s in steps] == list(range(1, 17))
    first = sum(s["reward_mean"] for s in steps[:3]) / 3
    last = sum(s["reward_mean"] for s in steps[-3:]) / 3
    assert first < 0.15, first
    assert last > 0.6, (first, last, [round(s["reward_mean"], 2) for s in steps])
    assert all(math.isfinite(s["kl"]) for s in steps)
    assert 0.5 < steps[-1]["kl"] < 100
    for key in (
        "reward_std",
        "kl_coef",
        "entropy",
        "response_length",
        "policy_loss",
        "value_loss",
        "clip_frac",
        "approx_kl",
        "samples_per_s",
        "time_generate",
        "time_score",
        "time_train",
    ):
        assert all(math.isfinite(s[key]) for s in steps), key
    # the policy was trained in place, the reference kept the initial weights
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in ref_state.items())
    assert section.samples and {"step", "prompt", "response", "reward"} <= set(section.samples[0])

    # 2. with a huge KL coefficient the policy barely moves
    cfg, model, tok, reward, prompts = toy(steps=8, kl_coef=20.0)
    held = PPOTrainer(cfg, model, tok, reward, prompts).train().steps
    # (Adam's fixed step size leaves a small noise floor of KL, far below the free run's)
    assert held[-1]["kl"] < 0.4 * steps[7]["kl"], (held[-1]["kl"], steps[7]["kl"])
    assert held[-1]["kl"] < 0.15 * steps[-1]["kl"], (held[-1]["kl"], steps[-1]["kl"])
    assert max(s["reward_mean"] for s in held) < 0.25, [s["reward_mean"] for s in held]


class Recorder:
    """A callback that samples through the PolicyHandle and stops at ``stop_at``."""

    def __init__(self, stop_at: int, sample: bool):
        self.stop_at, self.do_sample = stop_at, sample
        self.events: list[str] = []
        self.samples: list[Samples] = []

    def on_train_start(self, handle):
        self.events.append(f"start@{handle.step}")
        if self.do_sample:
            self.samples.append(handle.sample(["q1", "q2", "q3"], greedy=True, max_new_tokens=6))

    def on_step(self, info, handle):
        self.events.append(f"step{info.step}")
        assert info.step == handle.step and len(info.responses) == len(info.rewards)
        assert "reward_mean" in info.stats and info.prompt_ids
        if self.do_sample:
            self.samples.append(handle.sample(["q1", "q2", "q3"], max_new_tokens=6, score=False))
            self.samples.append(handle.sample(["q1", "q2", "q3"], max_new_tokens=6))
            self.samples.append(handle.sample(["q1", "q2"], greedy=True, reference=True))
        return info.step >= self.stop_at

    def on_train_end(self, handle):
        self.events.append("end")

    def log_section(self):
        return {"events": list(self.events)}


def test_callbacks_sample_and_stop_without_touching_training_rng(tmp_path):
    from judge_rl.runlog import load, new_log

    runs = []
    for sample in (True, False):
        cfg, model, tok, reward, prompts = toy(
            steps=5, batch_size=8, mini_batch_size=8, max_new_tokens=6
        )
        rec = Recorder(stop_at=2, sample=sample)
        log = new_log("ppo", "t")
        trainer = PPOTrainer(
            cfg,
            model,
            tok,
            reward,
            prompts,
            callbacks=[rec],
            run_log=log,
            run_dir=tmp_path / f"run{sample}",
        )
        section = trainer.train()
        runs.append(section)
        assert trainer.step == 2 and len(section.steps) == 2
        assert section.stopped_early and "Recorder" in section.stopped_early
        assert rec.events == ["start@0", "step1", "step2", "end"]
        saved = load(tmp_path / f"run{sample}")
        assert saved.ppo is not None and len(saved.ppo.steps) == 2
        assert saved.extra["Recorder"]["events"][-1] == "end"
        if sample:
            s0 = rec.samples[0]
            assert len(s0.responses) == 3 and len(s0.kl) == 3 and len(s0.ref_logprob) == 3
            assert s0.kl == pytest.approx([0.0, 0.0, 0.0], abs=1e-5)  # policy == reference
            assert all(len(t) <= 6 for t in s0.response_tokens)
            assert all(lp <= 0 for lp in s0.ref_logprob)
            later = rec.samples[-2]
            assert len(later.kl) == 3 and all(math.isfinite(k) for k in later.kl)
            texts_only = rec.samples[-3]  # the same draw, without the scoring passes
            assert texts_only.responses == later.responses and texts_only.kl == []
            assert len(rec.samples[-1].responses) == 2
    # sampling in the callback did not change what training did
    a, b = runs
    for sa, sb in zip(a.steps, b.steps, strict=True):
        for k in ("reward_mean", "kl", "policy_loss", "value_loss"):
            assert sa[k] == pytest.approx(sb[k], rel=1e-5, abs=1e-6), k


def test_resume_continues_step_count_and_statistics(tmp_path):
    kw = dict(steps=4, batch_size=8, mini_batch_size=4, max_new_tokens=6, value_model="policy")
    cfg, model, tok, reward, prompts = toy(output=str(tmp_path / "straight"), save_every=2, **kw)
    straight = PPOTrainer(cfg, model, tok, reward, prompts).train()
    ckpt = tmp_path / "straight" / "checkpoint-000002"
    assert (ckpt / "config.json").exists() and (ckpt / "trainer_state.pt").exists()
    assert (ckpt / "tokenizer_config.json").exists()
    assert [c["step"] for c in straight.checkpoints] == [2, 4]

    cfg, model, tok, reward, prompts = toy(
        output=str(tmp_path / "straight"), resume=str(ckpt), **kw
    )
    trainer = PPOTrainer(cfg, model, tok, reward, prompts)
    assert trainer.step == 2
    resumed = trainer.train()
    assert [int(s["step"]) for s in resumed.steps] == [1, 2, 3, 4]
    for sa, sb in zip(straight.steps, resumed.steps, strict=True):
        for k in (
            "reward_mean",
            "kl",
            "kl_coef",
            "entropy",
            "policy_loss",
            "value_loss",
            "clip_frac",
            "approx_kl",
            "response_length",
        ):
            assert sa[k] == pytest.approx(sb[k], rel=1e-4, abs=1e-5), (sa["step"], k)
    # the reference is the original model, not the checkpoint: KL keeps growing from step 3
    assert resumed.steps[-1]["kl"] == pytest.approx(straight.steps[-1]["kl"], rel=1e-4, abs=1e-5)


def test_separate_value_model_and_prompt_items_with_references():
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1, seed=1)
    items = [
        PromptItem(
            prompt_id=f"p{i}", prompt=[{"role": "user", "content": f"{i}+1?"}], reference=str(i + 1)
        )
        for i in range(4)
    ]
    cfg = PPOConfig(
        steps=2,
        batch_size=4,
        mini_batch_size=2,
        ppo_epochs=1,
        max_new_tokens=5,
        value_model="policy",
        device="cpu",
        kl_estimator="k3",
        target_kl=1.0,
        missing_eos_penalty=1.0,
        lr=1e-3,
    )
    section = PPOTrainer(cfg, model, tok, "verifier:numeric", items).train()
    assert len(section.steps) == 2
    assert section.steps[0]["reward_failures"] == 0
    assert section.steps[1]["kl_coef"] != section.steps[0]["kl_coef"]  # adaptive
    assert section.steps[0]["kl_penalty"] >= 0  # k3 is never negative


def test_failed_scores_are_dropped_and_counted():
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1)
    # no references: the verifier fails every score (nan), nothing is learnt from them
    cfg = PPOConfig(
        steps=1,
        batch_size=4,
        mini_batch_size=4,
        ppo_epochs=1,
        max_new_tokens=4,
        value_model="head",
        device="cpu",
    )
    s = PPOTrainer(cfg, model, tok, "verifier:numeric", ["a", "b", "c", "d"]).train().steps[0]
    assert s["reward_failures"] == 4 and math.isnan(s["reward_mean"])
    assert s["policy_loss"] == 0.0


def test_prompt_longer_than_context_is_a_config_error():
    from judge_rl.errors import ConfigError

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1, max_position_embeddings=32)
    cfg = PPOConfig(steps=1, batch_size=2, mini_batch_size=2, max_new_tokens=16, device="cpu")
    with pytest.raises(ConfigError, match="prompts: prompt '1' is .* tokens; the limit is 16"):
        PPOTrainer(cfg, model, tok, "contains:a", ["short", "x" * 40])


@requires_embedded
def test_embedded_model_ppo_step_on_gsm8k_style_prompts(embedded):
    model, tok = embedded
    policy = copy.deepcopy(model)  # the session fixture must stay untouched
    items = [
        PromptItem(
            prompt_id="g1",
            prompt="Tom has 3 apples and buys 4 more. How many apples "
            "does he have? Answer with the number.",
            reference="7",
        ),
        PromptItem(
            prompt_id="g2", prompt="What is 12 minus 5? Answer with the number.", reference="7"
        ),
    ]
    cfg = PPOConfig(
        steps=1,
        batch_size=2,
        mini_batch_size=2,
        ppo_epochs=1,
        max_new_tokens=12,
        value_model="head",
        device="cpu",
        lr=1e-6,
    )
    section = PPOTrainer(cfg, policy, tok, "verifier:gsm8k", items).train()
    s = section.steps[0]
    assert s["reward_failures"] == 0 and 0.0 <= s["reward_mean"] <= 1.0
    assert math.isfinite(s["policy_loss"]) and math.isfinite(s["value_loss"])
    assert abs(s["kl"]) < 1e-3  # first step: policy == reference
    assert section.samples[0]["response"]


def test_reward_model_reward_and_value_model_from_the_reward_model(tmp_path):
    from judge_rl.models import tiny_reward_model

    tok = tiny_tokenizer()
    rm = tiny_reward_model(tok, hidden_size=32, num_layers=1, seed=0)
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1)
    ppo = PPOConfig(
        steps=1,
        batch_size=4,
        mini_batch_size=4,
        ppo_epochs=1,
        max_new_tokens=4,
        value_model=str(tmp_path / "rm"),
        device="cpu",
        output=str(tmp_path / "o"),
    )
    trainer = PPOTrainer(ppo, model, tok, f"rm:{tmp_path / 'rm'}", ["a", "b", "c", "d"])
    vm = trainer.unwrapped.value_model
    assert torch.equal(vm.score.weight, rm.score.weight)  # head taken from the reward model
    s = trainer.train().steps[0]
    assert math.isfinite(s["reward_mean"]) and s["reward_std"] > 0
    assert (tmp_path / "o" / "checkpoint-000001" / "value.pt").exists()


def test_value_model_from_a_reward_model_with_another_vocabulary_is_an_error(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from judge_rl.errors import ConfigError

    cfg = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        num_labels=1,
    )
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path / "rm")
    tok = tiny_tokenizer()
    ppo = PPOConfig(
        steps=1, batch_size=2, mini_batch_size=2, value_model=str(tmp_path / "rm"), device="cpu"
    )
    with pytest.raises(ConfigError, match="value_model: .* vocabulary \\(300 tokens\\) differs"):
        PPOTrainer(ppo, tiny_causal_lm(tok, hidden_size=32, num_layers=1), tok, "contains:a", ["a"])
