"""Train a Bradley-Terry reward model on HH-RLHF human preference pairs; report held-out accuracy.

What it shows: the Python API of ``judge_rl.train.reward_model``. ``train_reward_model`` reads
the HH-RLHF transcripts (the shared prefix is the prompt, the last assistant turns are chosen and
rejected), holds out a split, trains a scalar head on a causal LM backbone with the Bradley-Terry
loss, and writes a ``from_pretrained``-loadable folder plus the run log
``reports/<run>/log.json``. The script prints held-out accuracy, margin and calibration (ECE),
then scores two replies with ``RewardModelScorer`` (what PPO's ``rm:PATH`` reward uses).

Run:

    python examples/train_rm_hh.py                                   # embedded SmolLM2-135M backbone
    python examples/train_rm_hh.py --data hh.jsonl --epochs 2 --model path/or/hub-name

The same on the command line (and under ``accelerate launch``/``torchrun``, see scale_out/):

    judge-rl train-rm --data examples/data/hh_rlhf/harmless-base_test_300.jsonl.gz \\
        --output out/rm-hh --max-length 512 --truncation left --eval-split 0.2 --run rm-hh

300 pairs and a 135M backbone teach little: held-out accuracy near 0.5 is the honest result of a
short CPU run (the published reward models use 160k pairs and billions of parameters). On a
CPU the embedded backbone trains slowly (2 steps of 4 pairs took 42 s on a shared, loaded 2-core
machine): shorten with ``--max-steps`` / ``--pairs`` or train on a GPU.

Small budget (what the test runs): ``--quick`` or ``JUDGE_RL_EXAMPLES_QUICK=1`` trains 3 steps
of 4 pairs on 40 pairs (pass a tiny ``--model`` folder to make it fast).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE / "data" / "hh_rlhf" / "harmless-base_test_300.jsonl.gz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="preference file (HH-RLHF, TRL, ...)")
    p.add_argument("--model", default="embedded", help="backbone: folder, hub name or 'embedded'")
    p.add_argument("--output", default="out/rm-hh", help="reward model folder")
    p.add_argument("--run", default="example-rm-hh", help="run log: reports/<run>/log.json")
    p.add_argument("--pairs", type=int, default=0, help="use only the first N pairs (0: all)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0, help="stop after N steps (0: all epochs)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--max-length", type=int, default=512, help="tokens of prompt + response")
    p.add_argument("--quick", action="store_true", help="3 steps on 40 pairs")
    args = p.parse_args(argv)
    if args.quick or os.environ.get("JUDGE_RL_EXAMPLES_QUICK"):
        args.pairs, args.max_steps, args.batch_size, args.max_length = 40, 3, 4, 256
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars between our lines

    from judge_rl.data import read_preferences
    from judge_rl.runlog import new_log, run_dir
    from judge_rl.train.reward_model import (
        RewardModelConfig,
        RewardModelScorer,
        config_dict,
        train_reward_model,
    )

    # 1. Data: HH-RLHF transcripts -> PreferenceRecord(prompt, chosen, rejected).
    res = read_preferences(args.data)
    records = res.records[: args.pairs] if args.pairs else res.records
    print(f"{len(records)} pairs from {args.data} (format {res.format})")

    # 2. Train. Long transcripts are cut from the left so the replies' ends are kept.
    config = RewardModelConfig(
        data=args.data,
        model=args.model,
        output=args.output,
        run=args.run,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        max_length=args.max_length,
        truncation="left",
        eval_split=0.2,
        eval_every=max(args.max_steps // 2, 0) or 20,
        save_every=0,
        seed=0,
    )
    rd = run_dir(args.run)
    log = new_log("train-rm", rd.name, config_dict(config))
    result = train_reward_model(config, records=records, run_log=log, log_dir=rd)

    # 3. Held-out metrics (pairs the model never trained on).
    f = result.final
    sec = result.section
    print(
        f"trained {result.steps} steps on {sec.n_train} pairs in {result.time_s:.1f} s "
        f"({result.pairs_per_s:.1f} pairs/s)"
    )
    print(
        f"held-out ({sec.n_eval} pairs): accuracy {f['accuracy']:.3f}, "
        f"mean margin {f['margin']:+.3f}, ECE {f['ece']:.3f}"
    )
    for e in sec.evals:
        print(f"  step {int(e['step']):>4}: accuracy {e['accuracy']:.3f}  loss {e['loss']:.4f}")

    # 4. Use it: the scorer behind PPO's `rm:PATH` reward and the `reward_model` judge kind.
    scorer = RewardModelScorer(result.output_dir, device="cpu")
    prompt = "How do I pick a lock?"
    replies = [
        "I can't help with breaking into property, but a locksmith can help if you're locked out.",
        "Sure! Insert a tension wrench and rake the pins until it opens.",
    ]
    for reply, reward in zip(replies, scorer.score([prompt] * 2, replies), strict=True):
        print(f"  reward {reward:+.3f}  {reply[:60]}")
    print(f"model: {result.output_dir}; run log: {rd / 'log.json'}")
    return 0


if __name__ == "__main__":
    from judge_rl.errors import JudgeRLError

    try:
        sys.exit(main())
    except JudgeRLError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
