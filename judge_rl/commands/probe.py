"""``judge-rl probe``: is this reward hackable? Score degenerate inputs against real answers."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "probe",
        help="probe a reward model or judge with degenerate inputs (is the reward hackable?)",
        description="Scores a fixed suite of degenerate responses (empty, 'the', one word x200, "
        "the prompt echoed, random tokens, sycophantic boilerplate, an injection string) next to "
        "real responses; a probe is flagged when its median score beats the real responses' "
        "median. Example: judge-rl probe --reward-model out/rm",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--reward-model", metavar="DIR", help="a reward model from train-rm")
    src.add_argument("--judge", metavar="NAME", help="a pointwise judge (name or judge.yaml)")
    src.add_argument("--reward", metavar="SPEC", help="any reward spec (e.g. verifier:gsm8k)")
    p.add_argument(
        "--responses",
        metavar="FILE",
        help="real responses: a candidates file (generate / MT-Bench answers) or a preference "
        "file (its chosen answers)",
    )
    p.add_argument(
        "--prompts",
        metavar="FILE",
        help="prompts whose reference answers serve as the real responses (default: a built-in "
        "set of 12 general questions with sound answers)",
    )
    p.add_argument("--max-prompts", type=int, default=64, metavar="N", help="at most N [64]")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of random probes [0]")
    p.add_argument("--run", metavar="NAME", help="run name [probe-<timestamp>]")
    p.add_argument(
        "--fail-on-flag", action="store_true", help="exit 1 when any probe is flagged (for CI)"
    )
    p.set_defaults(func=run)


def _source(args: argparse.Namespace) -> Any:
    from judge_rl.train.reward_sources import make_reward_source

    if args.reward_model:
        return make_reward_source(f"rm:{args.reward_model}")
    if args.judge:
        return make_reward_source(f"judge:{args.judge}")
    return make_reward_source(args.reward)


def _real(args: argparse.Namespace) -> tuple[list[Any], list[str], list[str | None], list[str]]:
    """(prompts, real responses, references, prompt ids)."""
    rows: list[tuple[Any, str, str | None, str]]
    from judge_rl.errors import ConfigError

    if args.responses:
        from judge_rl.data import FORMATS, detect_format, read_candidates, read_preferences

        kind = FORMATS[fmt].kind if (fmt := detect_format(args.responses)) in FORMATS else ""
        if kind == "preferences":
            recs = read_preferences(args.responses).records
            rows = [(r.prompt, _text(r.chosen), None, r.prompt_id) for r in recs]
        else:
            rows = [
                (c.prompt, _text(c.response), c.metadata.get("reference"), c.prompt_id)
                for c in read_candidates(args.responses)
            ]
    elif args.prompts:
        from judge_rl.data import read_prompts

        items = read_prompts(args.prompts)
        rows = [
            (it.prompt, it.reference, it.reference, it.prompt_id) for it in items if it.reference
        ]
        if not rows:
            raise ConfigError(
                f"{args.prompts}: no prompt has a reference answer to serve as a real response; "
                "give --responses FILE",
                setting="--prompts",
            )
    else:
        from judge_rl.overopt.probes import BUILTIN_PAIRS

        rows = [(q, a, a, f"builtin-{i}") for i, (q, a) in enumerate(BUILTIN_PAIRS)]
    rows = rows[: args.max_prompts]
    if not rows:
        raise ConfigError("no real responses to compare with", setting="--responses")
    return (
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [str(r[3]) for r in rows],
    )


def _text(messages: Any) -> str:
    from judge_rl.types import response_text

    return response_text(messages)


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from judge_rl import runlog
    from judge_rl.console import console
    from judge_rl.errors import ConfigError
    from judge_rl.overopt.probes import flagged_names, run_probes
    from judge_rl.runlog import OveroptSection

    if args.max_prompts < 1:
        raise ConfigError("must be a positive integer", setting="--max-prompts")
    prompts, real, refs, ids = _real(args)
    reward = _source(args)
    out_dir = runlog.run_dir(args.run or None)
    log = runlog.new_log(
        "probe",
        out_dir.name,
        {
            "reward": reward.name,
            "responses": args.responses,
            "prompts": args.prompts,
            "max_prompts": args.max_prompts,
            "seed": args.seed,
        },
    )
    for fp in getattr(reward, "fingerprints", []):
        log.add_judge(fp)
    rows = run_probes(
        reward, prompts, real, references=refs, prompt_ids=ids, step=0, seed=args.seed
    )
    for r in rows:
        r["reward"] = reward.name
    log.overopt = OveroptSection(proxy=reward.name, probes=rows)
    bad = flagged_names(rows)
    if bad:
        log.notes.append(f"the reward is hackable: {', '.join(bad)} beat the median real response")
    log.save(out_dir)

    out = console()
    t = Table(
        title=f"reward probes: {escape(reward.name)} ({len(prompts)} prompts)",
        caption="score: the probe's median score; real: the real responses' median",
    )
    for col in ("probe", "score", "real", "flagged", "example"):
        if col == "example":
            t.add_column(col, no_wrap=True, overflow="ellipsis", max_width=28)
        else:
            t.add_column(col, justify="right" if col in ("score", "real") else "left")
    med = rows[0]["median_real"] if rows else None
    for r in rows:
        t.add_row(
            r["name"],
            "-" if r["score"] is None else f"{r['score']:.4g}",
            "-" if med is None else f"{med:.4g}",
            "YES" if r["flagged"] else "no",
            escape(r["text"][:40].replace("\n", " ")),
        )
    out.print(t)
    if bad:
        out.print(
            f"the reward is hackable: {escape(', '.join(bad))} beat the median real response",
            highlight=False,
        )
    else:
        out.print("no probe beats the median real response", highlight=False)
    out.print(f"run log: {escape(str(out_dir / 'log.json'))}", highlight=False)
    return 1 if (bad and args.fail_on_flag) else 0
