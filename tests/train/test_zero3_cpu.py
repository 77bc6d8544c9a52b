"""DeepSpeed ZeRO-3 on two CPU processes over gloo (issue 17 item 5): inside PPO's full-parameter
gather (:func:`judge_rl.train.ppo.gather_full_params`) rank 0 alone samples with the rollout
engine and saves the policy as a full state dict, as the over-optimisation monitor and the
checkpoints do, and nothing waits on a collective the other rank skips; after the block the
parameters are partitioned again and training goes on.

Needs DeepSpeed, which is not a project dependency: install it outside the project venv, e.g.

    .venv/bin/python -m pip install --no-deps --no-build-isolation --target /tmp/ds-site \\
        deepspeed hjson msgpack py-cpuinfo einops ninja

and run with ``DS_ACCELERATOR=cpu PYTHONPATH=/tmp/ds-site`` (the test sets ``DS_ACCELERATOR``
itself). DeepSpeed's CPU accelerator compiles its shared-memory collectives op on first use
(g++, about 2 CPU-minutes, cached under ``TORCH_EXTENSIONS_DIR``); the test builds it once in a
subprocess before starting the ranks, and skips with the reason when that fails.

The ``[ppo]`` case and the PPO-trainer test go through ``judge_rl/train/ppo.py``: they need its
ZeRO-3 gather to use :func:`judge_rl.train.sharding.zero3_full_params` and its accelerator to
accept DeepSpeed's CPU accelerator (:func:`judge_rl.train.sharding.deepspeed_cpu_kwargs`); without
those, the first hangs (killed after 180 s) and the second stops on "DeepSpeed needs GPUs".
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _launch import (  # noqa: E402
    accelerate_launch,
    cpu_deepspeed_or_skip,
    free_port,
    launch_env,
    zero3_accelerate_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

_DS_CONFIG = {
    "train_micro_batch_size_per_gpu": 2,
    "gradient_accumulation_steps": 1,
    # every parameter sharded (the default keeps parameters under 1e5 elements whole on each
    # rank, which is all of a tiny model's)
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
}


def _worker(rank: int, world: int, port: int, out: str, via: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        DS_ACCELERATOR="cpu",
    )
    torch.set_num_threads(1)
    import copy

    from accelerate import Accelerator, DeepSpeedPlugin
    from accelerate.utils import InitProcessGroupKwargs
    from safetensors.torch import save_file

    from judge_rl.models import full_state_dict, tiny_causal_lm, tiny_tokenizer
    from judge_rl.train.ppo import gather_full_params
    from judge_rl.train.rollout import HFRolloutEngine
    from judge_rl.train.sharding import zero3_full_params

    # No CUDA: accelerate's backend for DeepSpeed must be named (gloo), else it counts one process.
    acc = Accelerator(
        deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=copy.deepcopy(_DS_CONFIG)),
        kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")],
    )
    try:
        tok = tiny_tokenizer()
        model = tiny_causal_lm(tok, hidden_size=32, num_layers=2, seed=3)
        plain = copy.deepcopy(model)  # a plain model, given the gathered weights below
        ids = torch.tensor([[5, 6, 7, 8, 9], [9, 8, 7, 6, 5]])
        mask = torch.ones_like(ids)

        def loss_of(m: torch.nn.Module) -> torch.Tensor:
            return m(input_ids=ids, attention_mask=mask, labels=ids).loss

        engine, ds_opt = acc.prepare(model, torch.optim.SGD(model.parameters(), lr=0.5))
        acc.backward(loss_of(engine))  # one step: the coordinator is now recording its trace
        ds_opt.step()
        ds_opt.zero_grad()

        policy = engine.module  # what the trainer samples from (accelerator.unwrap_model)
        offload = ds_opt.optimizer.parameter_offload
        hooks_before = (len(offload.forward_hooks), len(offload.backward_hooks))
        p0 = next(policy.parameters())
        sharded = [int(p0.numel()), str(p0.ds_status)]

        gather = gather_full_params(acc, engine) if via == "ppo" else zero3_full_params(engine)
        with gather:
            inside = [int(p0.numel()), str(p0.ds_status)]
            if rank == 0:  # rank 0 alone samples and saves (the monitor and checkpoints)
                with torch.no_grad():
                    logits = policy(input_ids=ids).logits.detach().clone()
                got = HFRolloutEngine(policy, tok, max_new_tokens=6).generate(
                    ids, mask, greedy=True
                )
                sd = {k: v.detach().clone() for k, v in full_state_dict(policy).items()}
                policy.save_pretrained(Path(out) / "saved", state_dict=sd)
            acc.wait_for_everyone()
        after = [int(p0.numel()), str(p0.ds_status)]
        hooks_after = (len(offload.forward_hooks), len(offload.backward_hooks))

        # the gathered weights, fetched the plain way (every rank, no forward); on rank 0 a plain
        # transformers model with these weights gives the logits and sample rank 0 must have seen
        import deepspeed

        logit_gap, same_sample = 0.0, True
        with deepspeed.zero.GatheredParameters(list(policy.parameters())):
            if rank == 0:
                gathered = {n: p.detach().clone() for n, p in policy.named_parameters()}
                save_file(gathered, str(Path(out) / "gathered.safetensors"))
        if rank == 0:
            with torch.no_grad():
                for n, p in plain.named_parameters():
                    p.copy_(gathered[n])
                logit_gap = float((plain(input_ids=ids).logits - logits).abs().max())
            want = HFRolloutEngine(plain, tok, max_new_tokens=6).generate(ids, mask, greedy=True)
            same_sample = want.response_ids.tolist() == got.response_ids.tolist()
        # training goes on after the block (hooks back, parameters partitioned again)
        loss2 = loss_of(engine)
        acc.backward(loss2)
        ds_opt.step()
        Path(out, f"rank{rank}.json").write_text(
            json.dumps(
                {
                    "sharded": sharded,
                    "inside": inside,
                    "after": after,
                    "full_numel": int(next(plain.parameters()).numel()),
                    "hooks_before": hooks_before,
                    "hooks_after": hooks_after,
                    "logit_gap": logit_gap,
                    "same_sample": same_sample,
                    "loss2": float(loss2.detach()),
                }
            )
        )
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


# "ppo": the trainer's gather (judge_rl.train.ppo.gather_full_params, what the monitor and the
# checkpoints run inside); "sharding": judge_rl.train.sharding.zero3_full_params on its own.
@pytest.mark.parametrize("via", ["ppo", "sharding"])
def test_zero3_rank0_samples_and_saves_full_weights_inside_the_gather(tmp_path, monkeypatch, via):
    cpu_deepspeed_or_skip()
    mp = pytest.importorskip("torch.multiprocessing")
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # inherited by the spawned ranks
    ctx = mp.spawn(_worker, args=(2, free_port(), str(tmp_path), via), nprocs=2, join=False)
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=2):
        if time.monotonic() > deadline:  # a rank waiting on a collective the other skipped
            for p in ctx.processes:
                p.kill()
            pytest.fail("a rank hung inside the ZeRO-3 gather (a collective only one rank entered)")
    for rank in (0, 1):
        r = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert r["sharded"] == [0, "ZeroParamStatus.NOT_AVAILABLE"]  # really sharded
        assert r["inside"] == [r["full_numel"], "ZeroParamStatus.AVAILABLE"]  # gathered
        assert r["after"] == r["sharded"]  # and partitioned again
        assert r["hooks_after"] == r["hooks_before"] and r["hooks_before"][0] > 0  # restored
        assert r["logit_gap"] < 1e-6 and r["same_sample"], str(r)  # the full model, on rank 0
    a, b = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    assert a["loss2"] == b["loss2"] and a["loss2"] == a["loss2"]  # the next step ran, in sync
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from judge_rl.models import tiny_causal_lm, tiny_tokenizer

    back = dict(AutoModelForCausalLM.from_pretrained(str(tmp_path / "saved")).named_parameters())
    gathered = load_file(str(tmp_path / "gathered.safetensors"))
    assert back.keys() == gathered.keys()
    assert all(torch.equal(back[k].detach(), gathered[k]) for k in gathered)  # full, exact
    init = dict(
        tiny_causal_lm(tiny_tokenizer(), hidden_size=32, num_layers=2, seed=3).named_parameters()
    )
    assert not all(torch.equal(init[k], gathered[k]) for k in gathered)  # the step was saved


# -- the PPO trainer under `accelerate launch` with a ZeRO-3 config ----------------------------


class _RankZeroMonitor:
    """What the over-optimisation monitor does at each step, on the main process only (the
    trainer calls callbacks there, inside its full-parameter gather): sample greedily and save a
    checkpoint."""

    def __init__(self) -> None:
        self.texts: list[list[str]] = []

    def on_train_start(self, handle) -> None:  # noqa: ANN001
        pass

    def on_step(self, info, handle) -> None:  # noqa: ANN001
        self.texts.append(handle.sample(["q1", "q2"], greedy=True, max_new_tokens=4).responses)
        handle.save_checkpoint(f"monitor-{info.step}")

    def on_train_end(self, handle) -> None:  # noqa: ANN001
        pass

    def log_section(self) -> dict:
        return {}


def _ppo_main(out: str, steps: int = 2, resume: str | None = None) -> None:
    """Run under ``accelerate launch`` (see the test below): two PPO steps with the monitor."""
    Path(out).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    import deepspeed

    from judge_rl.models import tiny_causal_lm, tiny_tokenizer
    from judge_rl.train.ppo import PPOConfig, PPOTrainer

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1, seed=0)
    cfg = PPOConfig(
        steps=steps,
        resume=resume,
        batch_size=4,
        mini_batch_size=2,
        ppo_epochs=1,
        lr=1e-2,
        max_new_tokens=4,
        value_model="policy",
        device="cpu",
        output=out,
        save_every=0,
    )
    monitor = _RankZeroMonitor()
    trainer = PPOTrainer(cfg, model, tok, "contains:a", [f"q{i}" for i in range(16)],
                         callbacks=[monitor])  # fmt: skip
    section = trainer.train()
    tag = "-resumed" if resume else ""
    acc = trainer.accelerator
    engine = trainer.model
    with deepspeed.zero.GatheredParameters(list(engine.parameters())):
        if acc.is_main_process:
            from safetensors.torch import save_file

            policy = trainer.unwrapped.policy
            save_file(
                {n: p.detach().clone() for n, p in policy.named_parameters()},
                str(Path(out) / f"gathered{tag}.safetensors"),
            )
    p0 = next(trainer.unwrapped.policy.parameters())
    Path(out, f"rank{acc.process_index}{tag}.json").write_text(
        json.dumps(
            {
                "distributed_type": str(acc.distributed_type),
                "zero_stage": acc.state.deepspeed_plugin.zero_stage,
                "world": acc.num_processes,
                "steps": len(section.steps),
                "monitor_texts": monitor.texts,
                "sharded_numel": int(p0.numel()),
            }
        )
    )


def test_zero3_ppo_monitor_samples_on_rank0_and_the_checkpoint_reloads(tmp_path):
    """Two PPO steps under ``accelerate launch`` with DeepSpeed ZeRO-3 on two CPU processes; the
    monitor samples and saves on rank 0 alone at each step (on the code before
    judge_rl.train.sharding this hangs at step 1); the final checkpoint, written on rank 0, is a
    full state dict that plain transformers reloads, equal to the gathered weights."""
    cpu_deepspeed_or_skip()
    # "auto": the trainer fills the micro-batch
    cfg = zero3_accelerate_config(tmp_path, train_micro_batch_size_per_gpu="auto")
    out = tmp_path / "run"
    accelerate_launch(
        cfg, __file__, [str(out)], env=launch_env(), log_path=tmp_path / "launch.log",
        hang="the ZeRO-3 PPO run hung (a collective only rank 0 entered: the monitor)",
    )  # fmt: skip
    a, b = (json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1))
    assert a["distributed_type"] == "DistributedType.DEEPSPEED" and a["zero_stage"] == 3
    assert a["world"] == b["world"] == 2 and a["steps"] == b["steps"] == 2
    assert a["sharded_numel"] == 0  # the policy really is partitioned
    assert len(a["monitor_texts"]) == 2 and b["monitor_texts"] == []  # rank 0 alone sampled
    assert (out / "checkpoint-monitor-1" / "config.json").exists()
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    back = dict(
        AutoModelForCausalLM.from_pretrained(str(out / "checkpoint-000002")).named_parameters()
    )
    gathered = load_file(str(out / "gathered.safetensors"))
    assert back.keys() == gathered.keys()
    assert all(torch.equal(back[k].detach(), gathered[k]) for k in gathered)
    # each rank saved its own part of ZeRO's optimiser state, as plain data (weights-only);
    # on the code before, rank 0's part alone was pickled (a stage enum, a loss-scaler object)
    from judge_rl.train._checkpoint import load_trainer_state

    parts = [
        load_trainer_state(out / "checkpoint-000002" / f"optimizer-rank{r}.pt") for r in (0, 1)
    ]
    assert not (out / "checkpoint-000002" / "optimizer.pt").exists()
    flat = [p["fp32_flat_groups"][0] for p in parts]
    assert flat[0].numel() > 0 and not torch.equal(flat[0], flat[1])  # two different partitions
    # resume under ZeRO-3: every rank reads every part and takes its own; one more step
    accelerate_launch(
        cfg, __file__, [str(out), "3", "latest"], env=launch_env(),
        log_path=tmp_path / "launch-resume.log", hang="the ZeRO-3 PPO resume hung",
    )  # fmt: skip
    a, b = (json.loads((out / f"rank{i}-resumed.json").read_text()) for i in (0, 1))
    assert a["steps"] == b["steps"] == 3 and len(a["monitor_texts"]) == 1


if __name__ == "__main__":  # a rank of test_zero3_ppo_monitor_samples_on_rank0_...
    _ppo_main(sys.argv[1], *([int(sys.argv[2]), sys.argv[3]] if len(sys.argv) > 2 else []))
