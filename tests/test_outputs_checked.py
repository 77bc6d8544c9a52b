"""Outputs are checked before any work starts (issue 16 item 3): an --output that cannot be
written fails at once with exit 2 naming --output, before a model loads or a prompt is read."""

from __future__ import annotations

import pytest

from judge_rl.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["ppo", "--policy", "embedded", "--reward", "verifier:gsm8k", "--prompts", "P", "--output"],
        [
            "grpo",
            "--policy",
            "embedded",
            "--reward",
            "verifier:gsm8k",
            "--prompts",
            "P",
            "--output",
        ],
        ["dpo", "--policy", "embedded", "--data", "P", "--output"],
        ["generate", "--model", "embedded", "--prompts", "P", "--output"],
    ],
    ids=["ppo", "grpo", "dpo", "generate"],
)
def test_output_under_a_file_is_refused_first(argv, tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "What is 2 + 3?", "reference": "5"}\n')
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    args = [str(prompts) if a == "P" else a for a in argv] + [str(blocker / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--output" in err and "Traceback" not in err
