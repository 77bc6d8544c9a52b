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

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

_DS_CONFIG = {
    "train_micro_batch_size_per_gpu": 2,
    "gradient_accumulation_steps": 1,
    # every parameter sharded (the default keeps parameters under 1e5 elements whole on each
    # rank, which is all of a tiny model's)
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_deepspeed_or_skip() -> None:
    """Skip unless DeepSpeed imports and its CPU accelerator starts (its communication op built)."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (see this file's doc)")
    code = (
        "from deepspeed.accelerator import get_accelerator as g\n"
        "a = g()\n"
        "assert a.device_name() == 'cpu', a.device_name()\n"
        "from deepspeed.comm.torch import build_shm_op\n"
        "build_shm_op()\n"
    )
    env = dict(os.environ, DS_ACCELERATOR="cpu")
    try:
        r = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        pytest.skip(
            "DeepSpeed's CPU op build did not finish in 15 min (a stale 'lock' file left in "
            "TORCH_EXTENSIONS_DIR by a killed build makes it wait forever)"
        )
    if r.returncode != 0:
        pytest.skip(f"DeepSpeed's CPU accelerator cannot start: {r.stderr.strip()[-600:]}")


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
    _cpu_deepspeed_or_skip()
    mp = pytest.importorskip("torch.multiprocessing")
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # inherited by the spawned ranks
    ctx = mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), via), nprocs=2, join=False)
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


def _ppo_main(out: str) -> None:
    """Run under ``accelerate launch`` (see the test below): two PPO steps with the monitor."""
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, f"pid-{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))
    torch.set_num_threads(1)
    import deepspeed

    from judge_rl.models import tiny_causal_lm, tiny_tokenizer
    from judge_rl.train.ppo import PPOConfig, PPOTrainer

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1, seed=0)
    cfg = PPOConfig(
        steps=2,
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
    acc = trainer.accelerator
    engine = trainer.model
    with deepspeed.zero.GatheredParameters(list(engine.parameters())):
        if acc.is_main_process:
            from safetensors.torch import save_file

            policy = trainer.unwrapped.policy
            save_file(
                {n: p.detach().clone() for n, p in policy.named_parameters()},
                str(Path(out) / "gathered.safetensors"),
            )
    p0 = next(trainer.unwrapped.policy.parameters())
    Path(out, f"rank{acc.process_index}.json").write_text(
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
    _cpu_deepspeed_or_skip()
    ds_json = tmp_path / "ds_zero3.json"
    ds_json.write_text(
        json.dumps(
            {
                "train_micro_batch_size_per_gpu": "auto",  # the trainer fills it
                "gradient_accumulation_steps": 1,
                "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
            }
        )
    )
    cfg = tmp_path / "accelerate.yaml"
    cfg.write_text(
        "compute_environment: LOCAL_MACHINE\n"
        "distributed_type: DEEPSPEED\n"
        "deepspeed_config:\n"
        f"  deepspeed_config_file: {ds_json}\n"
        "  deepspeed_multinode_launcher: standard\n"
        "  zero3_init_flag: false\n"
        "machine_rank: 0\n"
        "num_machines: 1\n"
        "num_processes: 2\n"
        "rdzv_backend: static\n"
        "same_network: true\n"
        "use_cpu: false\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(cfg),
        "--main_process_port", str(_free_port()), __file__, str(out),
    ]  # fmt: skip
    # on a hang the launcher's group and both ranks (torchrun starts them in sessions of their
    # own; their pids are in the run folder) are killed, so that nothing is left running
    log_path = tmp_path / "launch.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            for pid_file in out.glob("pid-*"):
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
            proc.wait()
            pytest.fail("the ZeRO-3 PPO run hung (a collective only rank 0 entered: the monitor)")
    assert proc.returncode == 0, log_path.read_text()[-4000:]
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


if __name__ == "__main__":  # a rank of test_zero3_ppo_monitor_samples_on_rank0_...
    _ppo_main(sys.argv[1])
