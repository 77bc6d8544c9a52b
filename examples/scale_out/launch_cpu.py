"""The multi-process path on a CPU: reward model, then PPO, each on 2 processes under accelerate.

What it shows: the same ``judge-rl train-rm`` and ``judge-rl ppo`` commands a single process runs,
launched by ``accelerate launch`` with ``cpu_ddp.yaml`` (2 processes, DDP over gloo). Each process
takes its slice of every global batch and gradients are averaged, so a 2 x 4-pair run takes the
same steps as a 1 x 8-pair run. On GPUs, swap the config file for ``multi_gpu.yaml``,
``deepspeed_zero3.yaml`` or ``fsdp.yaml`` (see README.md here). The commands it runs:

    accelerate launch --config_file examples/scale_out/cpu_ddp.yaml -m judge_rl train-rm \\
        --data examples/data/hh_rlhf/harmless-base_test_300.jsonl.gz --output out/rm-ddp \\
        --batch-size 4 --max-length 512 --truncation left --run-name rm-ddp
    accelerate launch --config_file examples/scale_out/cpu_ddp.yaml -m judge_rl ppo \\
        --policy embedded --reward rm:out/rm-ddp --prompts builtin:open-demo --output out/ppo-ddp \\
        --steps 4 --batch-size 4 --mini-batch-size 2 --run ppo-ddp --device cpu

(``torchrun --nproc_per_node 2 -m judge_rl train-rm ...`` works the same way.)

Run:

    python examples/scale_out/launch_cpu.py                 # embedded model, RM then PPO
    python examples/scale_out/launch_cpu.py --no-ppo        # reward model only

Small budget (what the test runs): ``--quick`` or ``JUDGE_RL_EXAMPLES_QUICK=1`` trains the reward
model for 3 steps on 2 processes and skips PPO unless ``--ppo`` is given (pass a tiny
``--model``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "hh_rlhf" / "harmless-base_test_300.jsonl.gz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="embedded", help="backbone / policy (folder or 'embedded')")
    p.add_argument("--config", default=str(HERE / "cpu_ddp.yaml"), help="accelerate config")
    p.add_argument("--out", default="out", help="folder for the models")
    p.add_argument("--port", type=int, default=0, help="rendezvous port (0: a free one each time)")
    p.add_argument("--rm-steps", type=int, default=20)
    p.add_argument("--ppo-steps", type=int, default=4)
    ppo = p.add_mutually_exclusive_group()
    ppo.add_argument("--ppo", dest="ppo", action="store_true", default=None, help="run PPO too")
    ppo.add_argument("--no-ppo", dest="ppo", action="store_false", help="reward model only")
    p.add_argument("--quick", action="store_true", help="3 reward-model steps, no PPO")
    args = p.parse_args(argv)
    quick = args.quick or bool(os.environ.get("JUDGE_RL_EXAMPLES_QUICK"))
    if quick:
        args.rm_steps, args.ppo_steps = 3, 1
    if args.ppo is None:
        args.ppo = not quick
    args.quick = quick
    return args


def free_port() -> int:
    """A TCP port nobody listens on now (for the processes' rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(config: str, port: int, *judge_rl_args: str) -> None:
    """``accelerate launch --config_file CONFIG -m judge_rl ARGS``, 1 CPU thread per process."""
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        config,
        "--main_process_port",
        str(port),
        "-m",
        "judge_rl",
        *judge_rl_args,
    ]
    shown = ["accelerate", "launch", "--config_file", config, "-m", "judge_rl", *judge_rl_args]
    print("$ " + shlex.join(shown), flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    r = subprocess.run(cmd, env=env)
    if r.returncode:
        raise SystemExit(r.returncode)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from judge_rl.runlog import load

    rm_dir = str(Path(args.out) / "rm-ddp")
    max_length = "256" if args.quick else "512"

    # 1. Reward model on 2 processes: 2 x 2 pairs per step in quick mode, 2 x 4 otherwise.
    launch(
        args.config,
        args.port,
        "train-rm",
        "--data",
        str(DATA),
        "--model",
        args.model,
        "--output",
        rm_dir,
        "--batch-size",
        "2" if args.quick else "4",
        "--max-steps",
        str(args.rm_steps),
        "--max-length",
        max_length,
        "--truncation",
        "left",
        "--eval-split",
        "0.2",
        "--eval-every",
        "0",
        "--save-every",
        "0",
        "--bf16",
        "off",
        "--threads",
        "1",
        "--run-name",
        "rm-ddp",
    )
    rm = load("reports/rm-ddp").reward_model
    assert rm is not None
    procs = (rm.model_extra or {}).get("processes")
    print(
        f"reward model: {procs} processes, {rm.final.get('steps', 0):.0f} steps, held-out "
        f"accuracy {rm.final.get('accuracy', float('nan')):.3f} on {rm.n_eval} pairs"
    )

    # 2. PPO on 2 processes against that reward model: each rank samples its own prompts.
    if args.ppo:
        launch(
            args.config,
            args.port and args.port + 1,
            "ppo",
            "--policy",
            args.model,
            "--reward",
            f"rm:{rm_dir}",
            "--prompts",
            "builtin:open-demo",
            "--output",
            str(Path(args.out) / "ppo-ddp"),
            "--steps",
            str(args.ppo_steps),
            "--batch-size",
            "2",
            "--mini-batch-size",
            "2",
            "--ppo-epochs",
            "1",
            "--max-new-tokens",
            "16" if args.quick else "48",
            "--run",
            "ppo-ddp",
            # On a machine without CUDA, say cpu: accelerate then runs DDP over gloo. Left
            # unset, each process would train alone (accelerate finds no GPU to share).
            "--device",
            "cpu",
        )
        ppo = load("reports/ppo-ddp").ppo
        assert ppo is not None
        for s in ppo.steps:
            print(f"ppo step {int(s['step'])}: reward {s['reward_mean']:+.3f}, KL {s['kl']:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
