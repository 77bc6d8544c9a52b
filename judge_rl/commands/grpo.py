"""``judge-rl grpo``: GRPO, Dr. GRPO or RLOO against a reward model, a judge or a verifier.

Every :class:`judge_rl.train.grpo.GRPOConfig` field is a flag (``--group-size``) and a key of
``--config FILE`` (YAML; unknown keys are errors). Flags override the file; the file overrides
the defaults; a resumed run starts from the checkpoint's saved settings. The over-optimisation
monitor's ``--monitor-*`` flags are the same as ``judge-rl ppo``'s.

The flag/YAML helpers here serve ``judge-rl dpo`` too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from judge_rl.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "grpo",
        help="optimise a policy with GRPO / Dr. GRPO / RLOO (K samples per prompt, no critic)",
        description="Group-relative policy optimisation: each prompt is sampled K times, the "
        "group's rewards give the baseline (GRPO: mean and std; Dr. GRPO: mean; RLOO: "
        "leave-one-out), a clipped ratio with an optional k3 KL term keeps the update small. "
        "Example: judge-rl grpo --policy embedded --reward verifier:gsm8k "
        "--prompts builtin:gsm8k-demo --output out/grpo --group-size 4 --steps 20",
    )
    from judge_rl.train.grpo import GRPOConfig, field_docs

    add_config_arguments(
        p,
        GRPOConfig,
        field_docs(),
        "GRPO settings (all also YAML keys of --config)",
        {
            "policy": "NAME",
            "reward": "SPEC",
            "prompts": "FILE",
            "output": "DIR",
            "run": "NAME",
            "algorithm": "{grpo,drgrpo,rloo}",
            "loss_agg": "{token,sequence,constant}",
            "rollout": "{hf,vllm}",
            "device": "{cpu,cuda}",
        },
    )
    from judge_rl.commands._monitor_options import add_monitor_arguments

    add_monitor_arguments(p)
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------
# Settings dataclass <-> flags and YAML (shared with judge-rl dpo)


def _flag_type(annotation: Any) -> Any:
    a = str(annotation)
    for prefix, kind in (("bool", bool), ("int", int), ("float", float)):
        if a.startswith(prefix):
            return kind
    return str


def add_config_arguments(
    p: argparse.ArgumentParser,
    cls: type,
    docs: dict[str, str],
    title: str,
    metavars: dict[str, str],
) -> None:
    """``--config FILE``, ``--threads N`` and one flag per field of the settings dataclass."""
    p.add_argument("--config", metavar="FILE", help="YAML file of settings (flags override)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")
    clean = {k: re.sub(r":\w+:`([^`]*)`", r"\1", v).replace("``", "") for k, v in docs.items()}
    group = p.add_argument_group(title)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        help_ = clean.get(f.name, "").replace("%", "%%")
        if f.default is not None and f.default != "":
            help_ += f" [default: {f.default}]"
        kind = _flag_type(f.type)
        if f.name == "resume":
            group.add_argument(
                flag, nargs="?", const="latest", default=None, metavar="CHECKPOINT", help=help_
            )
        elif kind is bool:
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_
            )
        else:
            mv = metavars.get(f.name) or {int: "N", float: "X"}.get(kind, f.name.upper())
            group.add_argument(flag, type=kind, default=None, help=help_, metavar=mv)


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


def load_config_file(path: str, cls: type) -> dict[str, Any]:
    """Fields of ``cls`` from a YAML file; unknown keys and wrong types are errors."""
    from judge_rl._io import safe_yaml_load

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{path} does not exist", setting="config")
    data = safe_yaml_load(p, file=path) or {}
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping of settings", file=path)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = str(k).replace("-", "_")
        if key not in fields:
            raise ConfigError(
                f"unknown setting (known: {', '.join(fields)})", setting=str(k), file=path
            )
        out[key] = _coerce(key, v, str(fields[key].type), path)
    return out


def _checkpoint_settings(
    resume: str, output: str | None, config_file: str, fields: set[str]
) -> dict[str, Any]:
    """The settings saved with the checkpoint ``--resume`` points at."""
    if resume == "latest":
        if not output:
            return {}
        found = sorted(Path(output).glob(f"checkpoint-*/{config_file}"))
        if not found:
            return {}
        path = found[-1]
    else:
        path = Path(resume) / config_file
        if not path.exists():
            return {}
    saved = json.loads(path.read_text(encoding="utf-8"))
    skip = {"resume", "steps", "epochs", "max_steps"}
    return {k: v for k, v in saved.items() if k in fields and k not in skip}


def config_from_args(
    args: argparse.Namespace,
    cls: type,
    config_file: str,
    required: tuple[tuple[str, str], ...],
) -> Any:
    """Defaults < the resumed checkpoint's settings < ``--config`` file < flags; validated."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    resume, output = getattr(args, "resume", None), getattr(args, "output", None)
    if resume:
        values.update(_checkpoint_settings(resume, output, config_file, names))
    if getattr(args, "config", None):
        values.update(load_config_file(args.config, cls))
    for name in names:
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v
    cfg = cls(**values)
    for name, flag in required:
        if not getattr(cfg, name):
            raise ConfigError(f"missing (give {flag} or set it in --config)", setting=name)
    cfg.validate()
    return cfg


def set_threads(args: argparse.Namespace) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


# ---------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, callbacks: list[Any] | None = None) -> int:
    """Run GRPO from parsed arguments; ``callbacks`` are added to the monitor's and the bar."""
    from judge_rl.train.grpo import CONFIG_FILE, GRPOConfig

    config = config_from_args(
        args,
        GRPOConfig,
        CONFIG_FILE,
        (("reward", "--reward SPEC"), ("prompts", "--prompts FILE"), ("output", "--output DIR")),
    )
    from judge_rl._io import check_output_dir
    from judge_rl.data import read_prompts

    if config.output:
        check_output_dir(config.output, "--output")  # before any model loads
    from judge_rl.train.grpo import GroupReward

    reward = GroupReward(config.reward)  # cheap checks first: the spec, then the prompts
    prompts = read_prompts(config.prompts)
    if not prompts:
        raise ConfigError(f"{config.prompts}: no prompts", setting="prompts")
    set_threads(args)
    from judge_rl.commands._monitor_options import monitor_callbacks
    from judge_rl.commands.ppo import ProgressCallback
    from judge_rl.console import console
    from judge_rl.runlog import new_log, run_dir
    from judge_rl.train.grpo import GRPOTrainer

    default_run = f"grpo-{Path(config.output).name}" if config.output else None
    rd = run_dir(config.run or default_run)
    run_log = new_log("grpo", rd.name, config.to_dict())
    cbs: list[Any] = [ProgressCallback(config.steps)]
    cbs += monitor_callbacks(args, config)
    cbs += list(callbacks or [])
    trainer = GRPOTrainer(
        config, config.policy, None, reward, prompts, callbacks=cbs, run_log=run_log, run_dir=rd
    )
    for fp in reward.fingerprints:
        run_log.add_judge(fp)
    section = trainer.train()
    if not trainer.is_main:
        return 0
    _print_summary(console().print, section, config.algorithm, rd)
    return 0


def _print_summary(say: Callable[[str], None], section: Any, algorithm: str, rd: Path) -> None:
    steps = section.steps
    if steps:
        first, last = steps[0], steps[-1]
        cps = sum(s["completions_per_s"] for s in steps) / len(steps)
        say(
            f"{algorithm.upper()}: {len(steps)} steps, reward {first['reward_mean']:.3f} -> "
            f"{last['reward_mean']:.3f}, zero-variance groups {last['frac_zero_std']:.0%}, "
            f"KL {last['kl']:.3f}, {cps:.3g} completions/s"
        )
    if section.stopped_early:
        say(f"stopped early: {section.stopped_early}")
    if section.checkpoints:
        say(f"checkpoint: {section.checkpoints[-1]['path']}")
    say(f"run log: {rd / 'log.json'}")
