"""``judge-rl dpo``: DPO, IPO or soft-label DPO from a preference file (``label`` output too).

Every :class:`judge_rl.train.dpo.DPOConfig` field is a flag (``--batch-size``) and a key of
``--config FILE`` (YAML). Flags override the file; the file overrides the defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "dpo",
        help="optimise a policy offline on preference pairs (DPO, IPO, soft-label DPO)",
        description="Direct preference optimisation: reference log-probabilities are computed "
        "once and cached, then the policy learns to raise chosen over rejected relative to the "
        "reference. --loss soft trains on the judge's p_chosen from `judge-rl label`. Example: "
        "judge-rl dpo --policy embedded --data labels.jsonl --output out/dpo --beta 0.1",
    )
    from judge_rl.commands.grpo import add_config_arguments
    from judge_rl.train.dpo import DPOConfig, field_docs

    add_config_arguments(
        p,
        DPOConfig,
        field_docs(),
        "DPO settings (all also YAML keys of --config)",
        {
            "policy": "NAME",
            "data": "FILE",
            "data_format": "FORMAT",
            "output": "DIR",
            "run": "NAME",
            "loss": "{sigmoid,soft,ipo}",
            "ties": "{drop,half}",
            "device": "{cpu,cuda}",
        },
    )
    p.set_defaults(func=run)


class _Progress:
    def __init__(self, total: int):
        from rich.progress import TextColumn

        from judge_rl.console import progress

        self.bar = progress(
            TextColumn("loss {task.fields[loss]}"), TextColumn("acc {task.fields[acc]}")
        )
        self.total = total
        self.task: Any = None

    def on_train_start(self, handle: Any) -> None:
        self.bar.start()
        self.task = self.bar.add_task(
            "dpo", total=self.total, completed=handle.step, loss="-", acc="-"
        )

    def on_step(self, stats: dict[str, float], handle: Any) -> bool:
        self.bar.update(
            self.task,
            completed=handle.step,
            loss=f"{stats['loss']:.3f}",
            acc=f"{stats['reward_accuracy']:.2f}",
        )
        return False

    def on_train_end(self, handle: Any) -> None:
        self.bar.stop()


def run(args: argparse.Namespace) -> int:
    from judge_rl.commands.grpo import config_from_args, set_threads
    from judge_rl.train.dpo import CONFIG_FILE, DPOConfig

    config = config_from_args(
        args, DPOConfig, CONFIG_FILE, (("data", "--data FILE"), ("output", "--output DIR"))
    )
    from judge_rl._io import check_output_dir

    if config.output:
        check_output_dir(config.output, "--output")  # before any model loads
    set_threads(args)
    from judge_rl.console import console
    from judge_rl.data import read_preferences
    from judge_rl.runlog import new_log, run_dir
    from judge_rl.train.dpo import DPOTrainer

    records = read_preferences(config.data, fmt=config.data_format).records  # before the model
    default_run = f"dpo-{Path(config.output).name}" if config.output else None
    rd = run_dir(config.run or default_run)
    run_log = new_log("dpo", rd.name, config.to_dict())
    # (a file without usable pairs is refused before the model loads)
    trainer = DPOTrainer(config, config.policy, None, records, run_log=run_log, run_dir=rd)
    trainer.callbacks.append(_Progress(trainer.total_steps))
    section = trainer.train()
    say = console().print
    s = trainer.summary
    if section.steps:
        last = section.steps[-1]
        pps = sum(x["pairs_per_s"] for x in section.steps) / len(section.steps)
        say(
            f"DPO ({config.loss}): {trainer.step} steps on {s['n_train']} pairs, last loss "
            f"{last['loss']:.4f}, {pps:.3g} pairs/s"
            + (f"; {s['ties_dropped']} ties dropped" if s["ties_dropped"] else "")
            + (f"; {s['truncated']} pairs truncated" if s["truncated"] else "")
        )
    ev = s.get("final_eval")
    if ev:
        say(
            f"held out ({int(ev['pairs'])} pairs): reward accuracy {ev['reward_accuracy']:.3f}, "
            f"margin {ev['margin']:.3f}, chosen {ev['reward_chosen']:.3f}, rejected "
            f"{ev['reward_rejected']:.3f}, loss {ev['loss']:.4f}"
        )
    if section.checkpoints:
        say(f"checkpoint: {section.checkpoints[-1]['path']}")
    say(f"run log: {rd / 'log.json'}")
    return 0
