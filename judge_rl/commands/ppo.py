"""``judge-rl ppo``: optimise a policy against a reward model, a judge or a verifier.

Every :class:`judge_rl.train.ppo.PPOConfig` field is a flag (``--mini-batch-size``) and a key of
``--config FILE`` (YAML; unknown keys are errors). Flags override the file; the file overrides the
defaults. Arguments are declared in :func:`add_arguments`; extra callbacks can be passed to
:func:`run` programmatically.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from judge_rl.commands._monitor_options import add_monitor_arguments, monitor_callbacks
from judge_rl.errors import ConfigError

CLI_ONLY = ("config", "threads")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "ppo",
        help="optimise a policy with PPO against a reward model, judge or verifier",
        description="PPO for language models: the policy samples, a reward source scores, a "
        "per-token KL penalty keeps it near the frozen reference. Example: judge-rl ppo --policy "
        "embedded --reward verifier:gsm8k --prompts builtin:gsm8k-demo --output out/ppo --steps 20",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def _flag_type(annotation: Any) -> Any:
    a = str(annotation)
    if a.startswith("bool"):
        return bool
    if a.startswith("int"):
        return int
    if a.startswith("float"):
        return float
    return str


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every PPO flag. Extensions (the over-optimisation monitor) add their own groups below."""
    from judge_rl.train._ppo_config import config_fields, field_docs

    p.add_argument(
        "--config", metavar="FILE", help="YAML file of PPOConfig fields (flags override)"
    )
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")
    import re

    docs = {
        k: re.sub(r":\w+:`([^`]*)`", r"\1", v).replace("``", "") for k, v in field_docs().items()
    }
    metavars = {
        "policy": "NAME",
        "reward": "SPEC",
        "prompts": "FILE",
        "output": "DIR",
        "run": "NAME",
        "kl_estimator": "{k1,k3}",
        "value_model": "{policy,head,PATH}",
        "rollout": "{hf,vllm}",
        "device": "{cpu,cuda}",
        "mixed_precision": "{auto,no,bf16,fp16}",
        "dtype": "{float32,bfloat16,float16,auto}",
        "ref_dtype": "{auto,float32,bfloat16,float16}",
        "save_dtype": "{auto,float32,bfloat16,float16}",
        "lr_scheduler": "{constant,linear,cosine}",
        "report_to": "{none,tensorboard,wandb}",
        "lora_target_modules": "MODULES",
    }
    main = p.add_argument_group("PPO settings (all also YAML keys of --config)")
    for name, f in config_fields().items():
        flag = "--" + name.replace("_", "-")
        help_ = docs.get(name, "").replace("%", "%%")  # argparse formats help with %
        if f.default is not None and f.default != "":
            help_ += f" [default: {f.default}]"
        kind = _flag_type(f.type)
        if name == "resume":
            main.add_argument(
                flag, nargs="?", const="latest", default=None, metavar="CHECKPOINT", help=help_
            )
        elif kind is bool:
            main.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            metavar = metavars.get(name) or {int: "N", float: "X"}.get(kind, name.upper())
            main.add_argument(flag, type=kind, default=None, help=help_, metavar=metavar)
    add_monitor_arguments(p)


# ---------------------------------------------------------------------------------------------
# Over-optimisation monitor (section reserved for the overopt helper: flags and callbacks)


# ---------------------------------------------------------------------------------------------


def _coerce(name: str, value: Any, annotation: str, file: str) -> Any:
    kind = _flag_type(annotation)
    if value is None:
        if "None" in str(annotation):
            return None
        raise ConfigError("must not be null", setting=name, file=file)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {value!r}", setting=name, file=file)
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"must be an integer, got {value!r}", setting=name, file=file)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"must be a number, got {value!r}", setting=name, file=file)
        return float(value)
    if not isinstance(value, (str, int, float)):
        raise ConfigError(f"must be a string, got {value!r}", setting=name, file=file)
    return str(value)


def load_config_file(path: str) -> dict[str, Any]:
    """PPOConfig fields from a YAML file; unknown keys and wrong types are errors."""
    from judge_rl._io import safe_yaml_load
    from judge_rl.train._ppo_config import config_fields

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{path} does not exist", setting="config")
    data = safe_yaml_load(p, file=path) or {}
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping of PPO settings", file=path)
    fields = config_fields()
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = str(k).replace("-", "_")
        if key not in fields:
            raise ConfigError(
                f"unknown setting (known: {', '.join(fields)})", setting=str(k), file=path
            )
        out[key] = _coerce(key, v, str(fields[key].type), path)
    return out


def config_from_args(args: argparse.Namespace) -> Any:
    """Defaults < the resumed checkpoint's settings < ``--config`` file < flags; validated;
    reward, prompts and output required."""
    from judge_rl.train._ppo_config import PPOConfig, config_fields

    values: dict[str, Any] = {}
    resume, output = getattr(args, "resume", None), getattr(args, "output", None)
    if resume:
        values.update(_checkpoint_settings(resume, output))
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    for name in config_fields():
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v
    cfg = PPOConfig(**values)
    for name, flag in (
        ("reward", "--reward SPEC"),
        ("prompts", "--prompts FILE"),
        ("output", "--output DIR"),
    ):
        if not getattr(cfg, name):
            raise ConfigError(f"missing (give {flag} or set it in --config)", setting=name)
    cfg.validate()
    return cfg


def _checkpoint_settings(resume: str, output: str | None) -> dict[str, Any]:
    """The settings saved with the checkpoint ``--resume`` points at (``ppo_config.json``), so a
    resumed run needs only ``--output DIR --resume`` (and what it changes, e.g. ``--steps``)."""
    import json

    from judge_rl.train._ppo_config import config_fields

    if resume == "latest":
        if not output:
            return {}
        found = sorted(Path(output).glob("checkpoint-*/ppo_config.json"))
        if not found:
            return {}
        path = found[-1]
    else:
        path = Path(resume) / "ppo_config.json"
        if not path.exists():
            return {}
    saved = json.loads(path.read_text(encoding="utf-8"))
    fields = config_fields()
    keep = {k: v for k, v in saved.items() if k in fields and k not in ("resume", "steps")}
    return keep


class ProgressCallback:
    """A rich progress bar with reward, KL and samples/s (a :class:`Callback`)."""

    def __init__(self, total: int):
        from rich.progress import TextColumn

        from judge_rl.console import progress

        self.total = total
        self.bar = progress(
            TextColumn("reward {task.fields[reward]}"),
            TextColumn("KL {task.fields[kl]}"),
            TextColumn("{task.fields[sps]} samples/s"),
        )
        self.task: Any = None

    def on_train_start(self, handle: Any) -> None:
        self.bar.start()
        self.task = self.bar.add_task(
            "ppo", total=self.total, completed=handle.step, reward="-", kl="-", sps="-"
        )

    def on_step(self, info: Any, handle: Any) -> bool:
        s = info.stats
        self.bar.update(
            self.task,
            completed=info.step,
            reward=f"{s['reward_mean']:.3f}",
            kl=f"{s['kl']:.2f}",
            sps=f"{s['samples_per_s']:.3g}",
        )
        return False

    def on_train_end(self, handle: Any) -> None:
        self.bar.stop()

    def log_section(self) -> dict[str, Any]:
        return {}


def run(args: argparse.Namespace, callbacks: list[Any] | None = None) -> int:
    """Run PPO from parsed arguments; ``callbacks`` are added to the monitor's and the bar."""
    config = config_from_args(args)
    from judge_rl._io import check_output_dir

    if config.output:
        check_output_dir(config.output, "--output")  # before any model loads

    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bar shows progress; theirs would interleave

    from judge_rl.console import console
    from judge_rl.runlog import new_log, run_dir
    from judge_rl.train.ppo import PPOTrainer
    from judge_rl.train.reward_sources import make_reward_source

    # Cheap checks first: the reward spec and the prompt file, then the models.
    reward = make_reward_source(config.reward)
    from judge_rl.data import read_prompts

    prompts = read_prompts(config.prompts)
    if not prompts:
        raise ConfigError(f"{config.prompts}: no prompts", setting="prompts")

    default_run = f"ppo-{Path(config.output).name}" if config.output else None
    rd = run_dir(config.run or default_run)
    run_log = new_log("ppo", rd.name, config.to_dict())
    for fp in getattr(reward, "fingerprints", []):
        run_log.add_judge(fp)
    cbs: list[Any] = [ProgressCallback(config.steps)]
    cbs += monitor_callbacks(args, config)
    cbs += list(callbacks or [])
    trainer = PPOTrainer(
        config, config.policy, None, reward, prompts, callbacks=cbs, run_log=run_log, run_dir=rd
    )
    section = trainer.train()
    if not trainer.is_main:
        return 0
    steps = section.steps
    out = console()
    if steps:
        first, last = steps[0], steps[-1]
        out.print(
            f"PPO: {len(steps)} steps, reward {first['reward_mean']:.3f} -> "
            f"{last['reward_mean']:.3f}, KL {last['kl']:.3f}, "
            f"{sum(s['samples_per_s'] for s in steps) / len(steps):.3g} samples/s"
        )
    if section.stopped_early:
        out.print(f"stopped early: {section.stopped_early}")
    if section.checkpoints:
        out.print(f"checkpoint: {section.checkpoints[-1]['path']}")
    out.print(f"run log: {rd / 'log.json'}")
    return 0
