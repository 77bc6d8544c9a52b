"""GRPO's shared-prompt log-probability passes with several processes (DDP, gloo on CPU, two
processes started by ``torch.multiprocessing``): the first-use check takes the shared forward,
and its backward goes through DDP (the wrapped module's forward is the shared forward for one
DDP call, :func:`judge_rl.train._shared_prompt.through_ddp`), so the LoRA gradients are averaged
over the processes as the plain forward's are; training steps keep the ranks in sync. Under
gradient checkpointing, as users with LoRA run it. Before, with several processes the plain
forward ran (the shared one called the unwrapped modules, whose backward DDP does not average).
The two-process test is ``slow``; the default suite has a one-process guard (DDP's forward is
called by the shared pass).
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from tests.train._launch import free_port

K, WORLD = 3, 2
ROWS = [11, 0, 1, 5, 6, 7, 2]


def _grads(tr):
    return torch.cat([p.grad.detach().flatten() for p in tr.policy.parameters() if p.requires_grad])


def _params(tr):
    return torch.cat([p.detach().flatten() for p in tr.policy.parameters() if p.requires_grad])


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD),
                      RANK=str(rank), LOCAL_RANK=str(rank), HF_HUB_OFFLINE="1")  # fmt: skip
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    from tests.train.test_grpo_lean import lora_trainer
    from tests.train.test_grpo_lora_logprobs import a_batch

    rec: dict = {}
    tr = lora_trainer("gqa", K=K, gradient_checkpointing=True)
    rec["world"] = tr.accelerator.num_processes
    batch = a_batch(tr, seed=rank)  # each rank its own samples
    rec["check"] = tr._check_shared(batch)
    rows = torch.tensor(ROWS)
    m = batch.response_mask[rows].float()
    w = torch.randn(m.shape, generator=torch.Generator().manual_seed(2))
    for name in ("shared", "plain", "local"):
        tr.optimizer.zero_grad(set_to_none=True)
        if name == "local":  # the unwrapped module, no averaging: this rank's own gradient
            with tr.model.no_sync():
                lp = tr._plain_logprobs(tr.policy, batch, rows)[0]
                (lp * m * w).sum().backward()
        else:
            fn = tr._shared_logprobs if name == "shared" else tr._plain_logprobs
            lp = fn(tr.model, batch, rows)[0]
            tr.accelerator.backward((lp * m * w).sum())
        rec[name] = _grads(tr)
    for shared in (True, False):  # two training steps each, from the same weights
        tr = lora_trainer("gqa", K=K, steps=2, beta=0.05, gradient_checkpointing=shared,
                          shared_prompt=shared)  # fmt: skip
        tr.train()
        rec[f"steps_shared_{shared}"] = tr._shared
        rec[f"params_{shared}"] = _params(tr)
    torch.save(rec, os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_shared_prompt_gradients_are_averaged_over_the_processes(tmp_path):
    pytest.importorskip("peft")
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD))
    assert a["world"] == b["world"] == WORLD
    assert a["check"] is True and b["check"] is True
    assert not torch.allclose(a["local"], b["local"])  # the ranks' own gradients differ
    mean = (a["local"] + b["local"]) / 2
    scale = float(mean.abs().max())
    for r in (a, b):  # the shared forward's gradient: averaged over the ranks, as the plain one
        torch.testing.assert_close(r["shared"], mean, atol=1e-5 * scale, rtol=1e-4)
        torch.testing.assert_close(r["plain"], mean, atol=1e-5 * scale, rtol=1e-4)
    assert a["steps_shared_True"] is True and a["steps_shared_False"] is False
    assert torch.equal(a["params_True"], b["params_True"])  # the ranks stayed in sync
    torch.testing.assert_close(a["params_True"], a["params_False"], atol=1e-5, rtol=1e-4)


def test_shared_training_forward_runs_through_ddp():
    """One process, the policy wrapped by DDP (gloo, world of 1) as accelerate wraps it for
    several: the shared forward with gradients is one call of DDP's forward (what makes DDP
    average the gradients: the slow test above checks the averaging), without gradients none;
    its gradients equal the plain forward's through DDP."""
    pytest.importorskip("peft")
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from tests.train.test_grpo_lean import lora_trainer
    from tests.train.test_grpo_lora_logprobs import a_batch

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        tr = lora_trainer("gqa", K=K, gradient_checkpointing=True)
        batch = a_batch(tr)
        wrapped = DDP(tr.model)
        calls = []
        real = DDP.forward

        def forward(self, *a, **k):
            calls.append(torch.is_grad_enabled())
            return real(self, *a, **k)

        rows = torch.tensor(ROWS)
        m = batch.response_mask[rows].float()
        grads = {}
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(DDP, "forward", forward)
            with torch.no_grad():
                tr._shared_logprobs(wrapped, batch, rows)
            assert calls == []
            for name in ("shared", "plain"):
                tr.optimizer.zero_grad(set_to_none=True)
                fn = tr._shared_logprobs if name == "shared" else tr._plain_logprobs
                (fn(wrapped, batch, rows)[0] * m).sum().backward()
                grads[name] = _grads(tr)
        assert calls == [True, True]  # one DDP forward per pass, the shared one included
        scale = float(grads["plain"].abs().max())
        torch.testing.assert_close(grads["shared"], grads["plain"], atol=1e-5 * scale, rtol=1e-4)
    finally:
        dist.destroy_process_group()
