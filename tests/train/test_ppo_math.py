"""PPO algorithm steps against values computed by hand (judge_rl/train/ppo.py)."""

from __future__ import annotations

import math

import pytest
import torch

from judge_rl.errors import ConfigError
from judge_rl.train.ppo import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    compute_rewards,
    entropy_from_logits,
    kl_penalty,
    logprobs_from_logits,
    masked_mean,
    policy_loss,
    value_loss,
    whiten,
)


def approx(t: torch.Tensor, rel: float = 1e-5):
    return pytest.approx(t.tolist(), rel=rel, abs=1e-6)


def test_gae_by_hand():
    # gamma 0.9, lambda 0.8; deltas: 0.7, -0.13, -0.14 (see the test's comments in the module)
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.3]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.8)
    # A2 = 1 - 0.3 = 0.7; A1 = (0.9*0.3 - 0.4) + 0.72*0.7 = 0.374; A0 = (0.36 - 0.5) + 0.72*0.374
    assert adv[0].tolist() == pytest.approx([0.12928, 0.374, 0.7], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([0.62928, 0.774, 1.0], abs=1e-6)


def test_gae_stops_at_the_mask():
    # The third position is padding: its reward and value must not leak into earlier steps.
    rewards = torch.tensor([[0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.4, 9.0]])
    adv, ret = compute_gae(rewards, values, torch.tensor([[1.0, 1.0, 0.0]]), gamma=0.9, lam=0.8)
    assert adv[0].tolist() == pytest.approx([0.292, 0.6, 0.0], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([0.792, 1.0, 0.0], abs=1e-6)


def test_gae_lambda_one_gamma_one_is_monte_carlo():
    rewards = torch.tensor([[0.1, -0.2, 1.0]])
    values = torch.tensor([[0.3, 0.7, -0.4]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert ret[0].tolist() == pytest.approx([0.9, 0.8, 1.0], abs=1e-6)  # reward-to-go
    assert adv[0].tolist() == pytest.approx([0.6, 0.1, 1.4], abs=1e-6)


def test_whiten_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    w = whiten(x, torch.ones(2, 2))
    s = math.sqrt(5 / 3)  # unbiased std of 1..4
    assert w.flatten().tolist() == pytest.approx([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s], rel=1e-5)
    # masked entries ignored and zeroed; shift_mean=False keeps the mean
    m = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    w2 = whiten(torch.tensor([[1.0, 2.0], [3.0, 100.0]]), m)
    assert w2.flatten().tolist() == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-5)
    w3 = whiten(torch.tensor([[1.0, 2.0], [3.0, 100.0]]), m, shift_mean=False)
    assert w3.flatten().tolist()[:3] == pytest.approx([1.0, 2.0, 3.0], abs=1e-5)


def test_kl_estimators_by_hand():
    lp = torch.tensor([-1.0, -2.0])
    ref = torch.tensor([-2.0, -1.0])
    assert kl_penalty(lp, ref, "k1").tolist() == pytest.approx([1.0, -1.0])
    # k3 = (r - 1) - log r with r = pi_ref / pi
    assert kl_penalty(lp, ref, "k3").tolist() == pytest.approx(
        [math.exp(-1) - 1 + 1, math.exp(1) - 1 - 1], rel=1e-6
    )
    with pytest.raises(ConfigError):
        kl_penalty(lp, ref, "k2")


def test_kl_estimators_are_unbiased():
    # Sampled from p, both estimators average to KL(p || q); k3 is never negative.
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.5, 0.3])
    true_kl = float((p * (p / q).log()).sum())
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)
    k1 = kl_penalty(p.log()[x], q.log()[x], "k1")
    k3 = kl_penalty(p.log()[x], q.log()[x], "k3")
    assert float(k1.mean()) == pytest.approx(true_kl, abs=0.01)
    assert float(k3.mean()) == pytest.approx(true_kl, abs=0.01)
    assert float(k3.min()) >= 0.0
    assert float(k3.std()) < float(k1.std())


def test_policy_loss_by_hand():
    lp = torch.tensor([[math.log(1.5), math.log(0.5), math.log(1.1)]])
    old = torch.zeros(1, 3)
    adv = torch.tensor([[1.0, 1.0, -1.0]])
    loss, clip_frac, approx_kl = policy_loss(lp, old, adv, torch.ones(1, 3), cliprange=0.2)
    # per token max(-A r, -A clip(r)): -1.2 (clipped), -0.5, 1.1
    assert float(loss) == pytest.approx((-1.2 - 0.5 + 1.1) / 3, rel=1e-5)
    assert float(clip_frac) == pytest.approx(1 / 3)
    expected_kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5)) + (0.1 - math.log(1.1))) / 3
    assert float(approx_kl) == pytest.approx(expected_kl, rel=1e-5)


def test_policy_loss_gradient_vanishes_when_clipped():
    lp = torch.tensor([[math.log(1.5)]], requires_grad=True)
    loss, _, _ = policy_loss(lp, torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), 0.2)
    loss.backward()
    assert float(lp.grad.abs().sum()) == 0.0


def test_value_loss_by_hand():
    ones = torch.ones(1, 2)
    loss, frac = value_loss(
        torch.tensor([[1.0, 0.0]]),
        torch.tensor([[0.5, 0.5]]),
        torch.tensor([[0.0, 1.0]]),
        ones,
        0.2,
    )
    assert float(loss) == pytest.approx(0.5) and float(frac) == 0.0
    # the clipped prediction is the worse one: 0.5 * (0.7 - 1.0)^2
    loss, frac = value_loss(
        torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[1.0]]), torch.ones(1, 1), 0.2
    )
    assert float(loss) == pytest.approx(0.045) and float(frac) == 1.0


def test_compute_rewards_puts_score_on_last_token():
    rewards, kl = compute_rewards(
        torch.tensor([2.0]),
        torch.tensor([[-1.0, -1.0, -1.0]]),
        torch.tensor([[-2.0, -1.0, -1.5]]),
        torch.tensor([[1.0, 1.0, 0.0]]),
        kl_coef=0.1,
        estimator="k1",
    )
    assert rewards[0].tolist() == pytest.approx([-0.1, 2.0, 0.0])
    assert kl[0].tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_logprobs_and_entropy():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # probs 0.25, 0.75
    assert logprobs_from_logits(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.75))
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert entropy_from_logits(logits).item() == pytest.approx(h, rel=1e-6)
    assert masked_mean(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])).item() == 0.0


def test_kl_controllers():
    fixed = FixedKLController(0.2)
    fixed.update(100.0, 1000)
    assert fixed.value == 0.2
    c = AdaptiveKLController(0.1, target=1.0, horizon=100)
    c.update(10.0, n_steps=50)  # error clipped to +0.2: 0.1 * (1 + 0.2 * 0.5)
    assert c.value == pytest.approx(0.11)
    c.update(0.0, n_steps=50)  # error clipped to -0.2
    assert c.value == pytest.approx(0.11 * 0.9)
    c.update(float("nan"), n_steps=50)
    assert c.value == pytest.approx(0.099)
