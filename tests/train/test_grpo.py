"""GRPO / Dr. GRPO / RLOO (judge_rl/train/grpo.py, judge_rl/train/_group.py): hand-computed
advantages and losses, the toy task with a tiny config-built model, equal-reward groups, a
pairwise judge ranking a group, resume, bad settings at the CLI, and the embedded model."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from judge_rl.models import tiny_causal_lm, tiny_tokenizer
from judge_rl.train._group import aggregate, group_advantages, group_diagnostics, grpo_loss, k3
from judge_rl.train.grpo import GroupReward, GRPOConfig, GRPOTrainer
from judge_rl.train.rewards import RewardQuery
from judge_rl.types import PromptItem
from tests.conftest import requires_embedded
from tests.train.test_grpo_lean import group_and_plain

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py


@pytest.fixture
def main_cli(capsys, monkeypatch, tmp_path):
    """``judge-rl ARGS`` in this process (a subprocess costs seconds of imports)."""
    from judge_rl.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")

    def _run(*args: str):
        capsys.readouterr()
        rc = main(list(args))
        out = capsys.readouterr()
        return rc, out.out, out.err

    return _run


# ---------------------------------------------------------------------------------------------
# Hand-computed values


def test_group_advantages_by_hand():
    r = torch.tensor([[1.0, 2.0, 4.0, 5.0]])
    # mean 3, deviations -2 -1 1 2; Bessel std sqrt(10/3) = 1.8257418583505538
    std = 1.8257418583505538
    grpo = group_advantages(r, "grpo")[0].tolist()
    assert grpo == pytest.approx([-2 / (std + 1e-4), -1 / (std + 1e-4), 1 / (std + 1e-4),
                                  2 / (std + 1e-4)], rel=1e-6)  # fmt: skip
    assert grpo[0] == pytest.approx(-1.0953851, rel=1e-6)
    assert group_advantages(r, "drgrpo")[0].tolist() == [-2.0, -1.0, 1.0, 2.0]
    # RLOO: r_i minus the mean of the other three: 1 - 11/3, 2 - 10/3, 4 - 8/3, 5 - 7/3
    assert group_advantages(r, "rloo")[0].tolist() == pytest.approx(
        [-8 / 3, -4 / 3, 4 / 3, 8 / 3], rel=1e-6
    )
    # two groups are independent; a failed score (NaN) leaves its group's baseline
    r2 = torch.tensor([[1.0, float("nan"), 3.0], [0.0, 0.0, 6.0]])
    assert group_advantages(r2, "drgrpo").tolist() == [[-1.0, 0.0, 1.0], [-2.0, -2.0, 4.0]]
    assert group_advantages(r2, "rloo").tolist() == [[-2.0, 0.0, 2.0], [-3.0, -3.0, 6.0]]


def test_equal_rewards_give_exactly_zero_advantage():
    # 0.1 * 3 is not exactly representable: the mean would leave ~1e-17 noise, then /eps blows it
    r = torch.tensor([[0.1, 0.1, 0.1], [7.0, 7.0, 7.0], [1.0, float("nan"), float("nan")]])
    for kind in ("grpo", "drgrpo", "rloo"):
        adv = group_advantages(r, kind)
        assert torch.equal(adv, torch.zeros_like(adv)), kind
    d = group_diagnostics(torch.tensor([[1.0, 1.0], [0.0, 1.0], [2.0, 2.0], [0.0, 3.0]]))
    assert d["frac_zero_std"] == 0.5
    assert d["group_std"] == pytest.approx((0 + 0.5 + 0 + 1.5) / 4)
    assert d["group_range"] == pytest.approx((0 + 1 + 0 + 3) / 4)


def test_aggregation_and_loss_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate(x, m, "token").item() == pytest.approx(10 / 4)
    assert aggregate(x, m, "sequence").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(x, m, "constant", max_tokens=5).item() == pytest.approx(10 / (2 * 5))
    # ratio 1 (old = new): loss = -A per token; with A = (1, -2) and the mask above:
    lp = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -9.0, -9.0]])
    loss, st = grpo_loss(lp, lp.clone(), torch.tensor([1.0, -2.0]), m, agg="token")
    assert loss.item() == pytest.approx((-1 * 3 + 2 * 1) / 4)
    assert st["clip_frac"].item() == 0.0
    # the clip: ratio e^0.5 > 1.2 with a positive advantage is clipped at 1.2
    lp2 = torch.tensor([[-0.5]])
    loss, st = grpo_loss(lp2, torch.tensor([[-1.0]]), torch.tensor([1.0]), torch.tensor([[1]]))
    assert loss.item() == pytest.approx(-1.2) and st["clip_frac"].item() == 1.0
    # k3 = r - 1 - log r with r = π_ref/π = e^-1
    assert k3(torch.tensor([-1.0]), torch.tensor([-2.0])).item() == pytest.approx(
        math.exp(-1) - 1 + 1, rel=1e-6
    )


def test_zero_advantage_gradient_is_the_kl_gradient_only():
    torch.manual_seed(0)
    theta = torch.randn(3, 5, requires_grad=True)
    ref = torch.randn(3, 5)
    mask = torch.ones(3, 5)
    zero = torch.zeros(3)
    loss, _ = grpo_loss(theta, theta.detach(), zero, mask, beta=0.3, ref_logprobs=ref)
    (g,) = torch.autograd.grad(loss, theta)
    kl_only = 0.3 * aggregate(k3(theta, ref), mask)
    (g_kl,) = torch.autograd.grad(kl_only, theta)
    assert torch.allclose(g, g_kl, atol=1e-7) and g.abs().sum() > 0
    loss0, _ = grpo_loss(theta, theta.detach(), zero, mask, beta=0.0)
    (g0,) = torch.autograd.grad(loss0, theta)
    assert torch.equal(g0, torch.zeros_like(g0))


# ---------------------------------------------------------------------------------------------
# The toy task


def toy(seed: int = 0, **kw):
    """Reward 1 when the response contains 'a' (3-6% of random responses at the start)."""
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1, seed=seed)
    cfg = dict(
        steps=12,
        batch_size=8,
        group_size=8,
        mini_batch_size=32,
        epochs=2,
        lr=1e-2,
        max_new_tokens=12,
        device="cpu",
        seed=seed,
    )
    cfg.update(kw)
    return GRPOConfig(**cfg), model, tok, [f"q{i}" for i in range(32)]


@pytest.mark.parametrize(("algorithm", "lr"), [("grpo", 1e-2), ("drgrpo", 3e-2), ("rloo", 3e-2)])
def test_toy_reward_rises(algorithm, lr):
    cfg, model, tok, prompts = toy(algorithm=algorithm, lr=lr)
    steps = GRPOTrainer(cfg, model, tok, "contains:a", prompts).train().steps
    rewards = [s["reward_mean"] for s in steps]
    assert [int(s["step"]) for s in steps] == list(range(1, 13))
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert first < 0.15 and last > 0.6, rewards
    for key in ("frac_zero_std", "group_std", "group_range", "clip_frac", "entropy", "loss",
                "completions_per_s", "response_length"):  # fmt: skip
        assert all(math.isfinite(s[key]) for s in steps), key
    # before learning most groups have no success at all: no signal from them
    assert steps[0]["frac_zero_std"] > 0.4
    assert all(math.isnan(s["kl"]) for s in steps)  # beta = 0: no reference pass


class ConstantReward:
    name = "constant"

    def __call__(self, queries):
        return [1.0] * len(queries)


def test_equal_group_rewards_move_the_policy_only_through_kl():
    # beta = 0: a constant reward gives zero advantages and the weights do not change at all
    cfg, model, tok, prompts = toy(steps=2)
    before = copy.deepcopy(model.state_dict())
    tr = GRPOTrainer(cfg, model, tok, ConstantReward(), prompts)
    steps = tr.train().steps
    assert all(s["adv_abs_mean"] == 0 and s["frac_zero_std"] == 1.0 for s in steps)
    assert all(torch.equal(v, tr.policy.state_dict()[k]) for k, v in before.items())

    # beta > 0: first move away from the reference with a real reward, then a constant reward:
    # the policy-gradient part is exactly 0, only the KL term moves the weights (towards ref)
    cfg, model, tok, prompts = toy(steps=3, beta=0.05, epochs=1, mini_batch_size=0)
    tr = GRPOTrainer(cfg, model, tok, "contains:a", prompts)
    tr.train()
    tr.group_reward = GroupReward("constant", [(1.0, ConstantReward())])
    before = copy.deepcopy(tr.policy.state_dict())
    s = tr.train_step()
    assert s["adv_abs_mean"] == 0 and s["policy_loss"] == 0.0 and s["kl_k3"] > 0
    assert any(not torch.equal(v, tr.policy.state_dict()[k]) for k, v in before.items())


def test_kl_term_holds_the_policy_near_the_reference():
    free = GRPOTrainer(*toy(steps=8, beta=0.0)[:3], "contains:a", toy()[3], callbacks=[Idle()])
    held = GRPOTrainer(*toy(steps=8, beta=2.0)[:3], "contains:a", toy()[3], callbacks=[Idle()])
    f, h = free.train().steps, held.train().steps
    assert all(math.isfinite(s["kl"]) for s in f + h)  # a callback makes the reference exist
    assert h[-1]["kl"] < 0.5 * f[-1]["kl"], (h[-1]["kl"], f[-1]["kl"])


class Idle:
    def on_train_start(self, handle):
        pass

    def on_step(self, info, handle):
        return False

    def on_train_end(self, handle):
        pass

    def log_section(self):
        return {}


def test_pairwise_judge_ranks_the_samples_of_a_group():
    # the mock judge prefers the longer response: in a group of lengths 1..4 the shares of wins
    # are 0, 1/3, 2/3, 1; groups never meet each other
    gr = GroupReward("pairwise:mock-pairwise")
    qs = [RewardQuery("p", "x" * n, prompt_id="g0") for n in (3, 1, 4, 2)]
    qs += [RewardQuery("q", "y" * n, prompt_id="g1") for n in (5, 9)]
    r = gr(qs, [[0, 1, 2, 3], [4, 5]])
    assert r == pytest.approx([2 / 3, 0.0, 1.0, 1 / 3, 0.0, 1.0])
    assert gr.fingerprints  # the run log records the judge

    cfg, model, tok, prompts = toy(steps=2, batch_size=2, group_size=3, mini_batch_size=0)
    steps = GRPOTrainer(cfg, model, tok, "pairwise:mock-pairwise", prompts).train().steps
    assert all(0 <= s["reward_mean"] <= 1 and s["reward_failures"] == 0 for s in steps)


def test_resume_reproduces_the_statistics(tmp_path):
    kw = dict(steps=4, batch_size=4, group_size=4, mini_batch_size=8, beta=0.05, save_every=2)
    cfg, model, tok, prompts = toy(output=str(tmp_path / "o"), **kw)
    straight = GRPOTrainer(cfg, model, tok, "contains:a", prompts).train()
    ckpt = tmp_path / "o" / "checkpoint-000002"
    assert (ckpt / "trainer_state.pt").exists() and (ckpt / "config.json").exists()
    assert (ckpt / "tokenizer_config.json").exists()
    assert [c["step"] for c in straight.checkpoints] == [2, 4]

    cfg, model, tok, prompts = toy(output=str(tmp_path / "o"), resume=str(ckpt), **kw)
    tr = GRPOTrainer(cfg, model, tok, "contains:a", prompts)
    assert tr.step == 2
    resumed = tr.train()
    assert [int(s["step"]) for s in resumed.steps] == [1, 2, 3, 4]
    for a, b in zip(straight.steps, resumed.steps, strict=True):
        for k in ("reward_mean", "kl", "kl_k3", "loss", "clip_frac", "group_std", "entropy"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), (a["step"], k)


def test_config_errors():
    from judge_rl.errors import ConfigError

    with pytest.raises(ConfigError, match="group_size: must be at least 2"):
        GRPOConfig(group_size=1).validate()
    with pytest.raises(ConfigError, match="beta: must be >= 0"):
        GRPOConfig(beta=-0.1).validate()
    with pytest.raises(ConfigError, match="mini_batch_size: 5 does not divide"):
        GRPOConfig(batch_size=2, group_size=4, mini_batch_size=5).validate()
    with pytest.raises(ConfigError, match="algorithm"):
        GRPOConfig(algorithm="ppo").validate()


@pytest.mark.parametrize("env", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_sharded_launch_is_refused_before_any_work(monkeypatch, env):
    """GRPO has no full-parameter gather: under FSDP / ZeRO-3 its rank-0 saves and monitor
    sampling would wait forever on the other ranks, so such a launch is one clear error."""
    from judge_rl.errors import ConfigError

    cfg, model, tok, prompts = toy(steps=1)
    monkeypatch.setenv(env, "true")
    with pytest.raises(ConfigError, match="device: grpo runs on one process or DDP"):
        GRPOTrainer(cfg, model, tok, "contains:a", prompts)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--group-size", "1"], "group_size: must be at least 2"),
        (["--beta", "-0.5"], "beta: must be >= 0"),
        (["--reward", "bogus:x"], "unknown reward kind 'bogus'"),
    ],
)
def test_cli_bad_settings_exit_2(main_cli, tmp_path, tiny_model_dir, flags, message):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    base = ["grpo", "--policy", str(tiny_model_dir), "--prompts", str(prompts),
            "--output", str(tmp_path / "o"), "--reward", "contains:a"]  # fmt: skip
    rc, _, err = main_cli(*base, *flags)
    assert rc == 2, err
    assert message in " ".join(err.split()) and "Traceback" not in err


def test_cli_runs_and_writes_the_run_log(main_cli, tmp_path, tiny_model_dir):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(f'{{"prompt": "q{i}"}}\n' for i in range(4)))
    r = main_cli("grpo", "--policy", str(tiny_model_dir), "--prompts", str(prompts), "--output",
            str(tmp_path / "o"), "--reward", "contains:a", "--steps", "2", "--batch-size", "2",
            "--group-size", "2", "--max-new-tokens", "4", "--algorithm", "rloo", "--device",
            "cpu", "--run", "g")  # fmt: skip
    rc, out, err = r
    assert rc == 0, err
    assert "RLOO: 2 steps" in out
    from judge_rl.runlog import load

    run = load(tmp_path / "reports" / "g")
    assert run.command == "grpo" and run.ppo is not None and len(run.ppo.steps) == 2
    assert run.config["algorithm"] == "rloo" and run.ppo.checkpoints


# ---------------------------------------------------------------------------------------------
# The embedded model


@requires_embedded
@pytest.mark.slow
def test_embedded_model_grpo_steps_with_the_gsm8k_verifier(embedded):
    model, tok = embedded
    policy = copy.deepcopy(model)
    items = [
        PromptItem(prompt_id="g1", prompt="What is 3 + 4? Answer with the number.", reference="7"),
        PromptItem(
            prompt_id="g2", prompt="What is 12 minus 5? Answer with the number.", reference="7"
        ),  # fmt: skip
    ]
    cfg = GRPOConfig(steps=2, batch_size=2, group_size=4, max_new_tokens=16, device="cpu",
                     lr=1e-6, beta=0.04)  # fmt: skip
    section = GRPOTrainer(cfg, policy, tok, "verifier:gsm8k", items).train()
    for s in section.steps:
        assert s["reward_failures"] == 0 and 0.0 <= s["reward_mean"] <= 1.0
        assert math.isfinite(s["loss"]) and math.isfinite(s["kl"])
    assert abs(section.steps[0]["kl"]) < 1e-3  # first step: policy == reference
    assert section.samples[0]["response"]


def test_lora_policy_with_the_adapter_free_reference():
    pytest.importorskip("peft")
    cfg, model, tok, prompts = toy(steps=3, beta=0.1, lora_r=4, lr=1e-2)
    tr = GRPOTrainer(cfg, model, tok, "contains:a", prompts)
    assert tr.ref_policy is None and tr.has_reference  # the base model is the reference
    steps = tr.train().steps
    assert abs(steps[0]["kl"]) < 1e-5  # LoRA starts as the identity
    assert all(math.isfinite(s["kl"]) and math.isfinite(s["loss"]) for s in steps)
    assert steps[-1]["kl"] != steps[0]["kl"]  # the adapters moved


def test_shared_prompt_forward_gives_the_plain_forward_results():
    runs = {}
    for shared in (True, False):
        cfg, model, tok, prompts = toy(steps=3, beta=0.05, shared_prompt=shared)
        tr = GRPOTrainer(cfg, model, tok, "contains:a", prompts)
        runs[shared] = tr.train().steps
        assert tr._shared is shared
    for a, b in zip(runs[True], runs[False], strict=True):
        for k in ("reward_mean", "kl", "kl_k3", "loss", "entropy", "clip_frac"):
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-4), (a["step"], k)


def test_shared_prefill_samples_what_the_plain_rollout_samples():
    cfg, model, tok, _ = toy(batch_size=4, group_size=3, max_new_tokens=10, mini_batch_size=0)
    prompts = [f"question {i} " + "x" * (i % 5) for i in range(8)]  # lengths differ: left padding
    tr = GRPOTrainer(cfg, model, tok, "contains:a", prompts)
    a, b, _, _ = group_and_plain(tr, 3)
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
    assert torch.equal(a.query_ids, b.query_ids) and torch.equal(a.response_mask, b.response_mask)
