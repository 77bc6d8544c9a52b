"""``judge-rl models``: the embedded model and how to use others."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("models", help="list the embedded default model and how to add others")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from judge_rl import models
    from judge_rl.console import console
    from judge_rl.errors import ConfigError

    t = Table(title="models", show_lines=False)
    t.add_column("name")
    t.add_column("status")
    t.add_column("notes")
    try:
        gguf = models.embedded_gguf_path()
        status = "installed"
        note = str(gguf)
    except ConfigError:
        status = "not installed"
        note = models.INSTALL_HINT
    t.add_row(
        f"{models.EMBEDDED_NAME} (aliases: embedded, smollm2)",
        status,
        note,
    )
    console().print(t)
    console().print(
        "Any transformers model folder (or hub name, when the hub is reachable) works wherever a "
        "model is asked for: --model PATH. Remote judges: an OpenAI-compatible endpoint with "
        "--backend openai --base-url URL --model NAME (vLLM `vllm serve`, Ollama, OpenAI)."
    )
    return 0
