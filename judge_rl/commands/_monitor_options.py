"""The ``--monitor-*`` flags of ``judge-rl ppo`` and the callbacks built from them.

:mod:`judge_rl.commands.ppo` and :mod:`judge_rl.commands.grpo` call :func:`add_monitor_arguments`
when they build their parsers and :func:`monitor_callbacks` before training: flags become a
:class:`judge_rl.overopt.monitor.MonitorConfig` here, and the library never sees argparse. Argparse only at module level: ``judge-rl --help`` stays
fast.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from judge_rl.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MONITOR_PROMPTS = 32


def add_monitor_arguments(p: argparse.ArgumentParser) -> None:
    """Add the over-optimisation monitor's flags to ``judge-rl ppo``."""
    g = p.add_argument_group(
        "over-optimisation monitor",
        "Every N steps sample held-out prompts, score them with the training reward (proxy) and a "
        "gold reward, record KL, fit Gao et al.'s gold(KL) curve and alarm when gold falls while "
        "the proxy rises. Results go to the run log's overopt section.",
    )
    g.add_argument(
        "--monitor", action="store_true", help="turn the monitor on (needs --monitor-gold)"
    )
    g.add_argument(
        "--monitor-gold",
        metavar="SPEC",
        help="gold reward: a reward spec such as judge:NAME, verifier:gsm8k, rm:PATH "
        "(turns the monitor on)",
    )
    g.add_argument(
        "--monitor-every", type=int, default=10, metavar="N", help="evaluate every N steps [10]"
    )
    g.add_argument(
        "--monitor-prompts",
        metavar="FILE",
        help="held-out prompts (default: the first "
        f"{DEFAULT_MONITOR_PROMPTS} training prompts, which are not held out: a warning is logged)",
    )
    g.add_argument(
        "--monitor-max-prompts",
        type=int,
        default=64,
        metavar="N",
        help="use at most N held-out prompts [64]",
    )
    g.add_argument(
        "--monitor-samples", type=int, default=1, metavar="K", help="samples per prompt [1]"
    )
    g.add_argument(
        "--monitor-scored-samples",
        type=int,
        metavar="J",
        help="of those, how many per prompt get the KL and perplexity passes (default: all)",
    )
    g.add_argument(
        "--monitor-max-new-tokens",
        type=int,
        metavar="N",
        help="response budget of the monitor's samples (default: the trainer's)",
    )
    g.add_argument(
        "--monitor-alpha",
        type=float,
        default=0.05,
        metavar="X",
        help="run-level false-alarm rate of the over-optimisation alarm, over every evaluation of the run [0.05]",
    )
    g.add_argument(
        "--stop-on-alarm", action="store_true", help="stop training when the alarm fires"
    )
    g.add_argument(
        "--probe",
        action="store_true",
        help="run the reward probes (empty, 'the', word x200, echo, random, sycophancy, "
        "injection) before training and at every monitor step",
    )
    g.add_argument(
        "--monitor-no-checkpoints",
        action="store_true",
        help="do not save a checkpoint at each evaluation (no best-by-gold checkpoint then)",
    )


def _enabled(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "monitor", False) or getattr(args, "monitor_gold", None))


def monitor_config(args: argparse.Namespace) -> Any:
    """:class:`MonitorConfig` from the flags; bad values are :class:`ConfigError`."""
    from judge_rl.overopt.monitor import MonitorConfig
    from judge_rl.overopt.stats import AlarmConfig

    for name in ("monitor_every", "monitor_samples", "monitor_max_prompts"):
        v = getattr(args, name)
        if v is None or v < 1:
            raise ConfigError(
                f"must be a positive integer, got {v!r}", setting="--" + name.replace("_", "-")
            )
    if (
        getattr(args, "monitor_max_new_tokens", None) is not None
        and args.monitor_max_new_tokens < 1
    ):
        raise ConfigError("must be a positive integer", setting="--monitor-max-new-tokens")
    if not 0 < args.monitor_alpha < 1:
        raise ConfigError(f"must be in (0, 1), got {args.monitor_alpha}", setting="--monitor-alpha")
    return MonitorConfig(
        every=args.monitor_every,
        samples_per_prompt=args.monitor_samples,
        scored_samples=getattr(args, "monitor_scored_samples", None),
        max_new_tokens=args.monitor_max_new_tokens,
        stop_on_alarm=bool(args.stop_on_alarm),
        probe=bool(args.probe),
        save_checkpoints=not args.monitor_no_checkpoints,
        alarm=AlarmConfig(alpha=args.monitor_alpha),
    )


def monitor_callbacks(args: argparse.Namespace, config: Any) -> list[Any]:
    """The monitor (and a console reporter) when ``--monitor``/``--monitor-gold`` is given."""
    if not _enabled(args):
        if getattr(args, "stop_on_alarm", False) or getattr(args, "probe", False):
            raise ConfigError(
                "needs the monitor (give --monitor-gold SPEC)", setting="--stop-on-alarm/--probe"
            )
        return []
    if not getattr(args, "monitor_gold", None):
        raise ConfigError(
            "the monitor needs a gold reward (e.g. --monitor-gold judge:NAME)",
            setting="--monitor-gold",
        )
    mcfg = monitor_config(args)
    from judge_rl.data import read_prompts
    from judge_rl.overopt.monitor import OveroptMonitor
    from judge_rl.train.reward_sources import make_reward_source

    gold = make_reward_source(args.monitor_gold)
    if args.monitor_prompts:
        items = read_prompts(args.monitor_prompts)
        if not items:
            raise ConfigError(f"{args.monitor_prompts}: no prompts", setting="--monitor-prompts")
    else:
        items = read_prompts(config.prompts)[:DEFAULT_MONITOR_PROMPTS]
        log.warning(
            "monitor: no --monitor-prompts; using the first %d training prompts (not held out)",
            len(items),
        )
    items = items[: args.monitor_max_prompts]
    if gold.name == getattr(config, "reward", None):
        log.warning("monitor: the gold reward is the training reward; the alarm cannot fire")
    monitor = OveroptMonitor(None, gold, items, mcfg)
    return [monitor, AlarmReporter(monitor)]


class AlarmReporter:
    """Prints the monitor's alarms and, at the end, its summary to stderr (CLI only)."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self._shown = 0

    def on_train_start(self, handle: Any) -> None:
        from judge_rl.overopt.probes import flagged_names

        bad = flagged_names(self.monitor.section.probes)
        if bad:
            self._print(
                "[yellow]warning:[/] ",
                "the reward is hackable: probes beating the median real response: "
                + ", ".join(sorted(set(bad))),
            )

    def on_step(self, info: Any, handle: Any) -> bool:
        alarms = self.monitor.section.alarms
        for a in alarms[self._shown :]:
            self._print(
                "[bold red]over-optimisation alarm[/] ", f"(step {a['step']}): {a['message']}"
            )
        self._shown = len(alarms)
        return False

    def on_train_end(self, handle: Any) -> None:
        self.on_step(None, handle)
        sec = self.monitor.section
        fit = sec.fit or {}
        if fit.get("kl_peak") is not None:
            r2 = fit.get("r2")
            self._print(
                "",
                f"monitor: gold peaks at KL {fit['kl_peak']:.2f} (Gao et al. fit, R² "
                + (f"{r2:.2f})" if r2 is not None else "n/a)"),
            )
        best = sec.best_checkpoint or {}
        if best.get("path"):
            self._print(
                "",
                f"monitor: best checkpoint by gold: step {best['step']} (gold "
                f"{best['gold']:.3f}): {best['path']}",
            )

    def log_section(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def _print(prefix: str, msg: str = "") -> None:
        """``prefix`` is rich markup; ``msg`` (names, paths, model text) is escaped."""
        from rich.markup import escape

        from judge_rl.console import err_console

        err_console().print(prefix + escape(msg), highlight=False, soft_wrap=True)


__all__ = ["AlarmReporter", "add_monitor_arguments", "monitor_callbacks", "monitor_config"]
