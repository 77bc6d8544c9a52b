"""`judge-rl verify` (judge_rl/commands/verify.py) and `label --judge math-equiv`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from judge_rl.data import write_candidates
from judge_rl.types import Candidate


@pytest.fixture
def cli(capsys):
    from judge_rl.cli import main

    def _run(*args: str):
        capsys.readouterr()
        rc = main(list(args))
        out = capsys.readouterr()
        return rc, out.out, out.err

    return _run


def test_verify_command_verdicts(cli):
    rc, out, _ = cli("verify", "--mode", "boxed", "--reference", r"\frac 34", r"\boxed{\frac 35}")
    assert rc == 0 and out.startswith("incorrect")
    rc, out, _ = cli("verify", "--mode", "boxed", "--reference", r"\frac 34", r"\boxed{0.75}")
    assert rc == 0 and out.startswith("correct")
    rc, out, _ = cli("verify", "--reference", "9", "--json", "The answer is 16 - 3 - 4 = 9")
    got = json.loads(out)
    assert rc == 0 and got["correct"] is True and got["extracted"] == "9"
    rc, _, _ = cli("verify", "--strict", "--reference", "5", "The answer is not 5, it's 7.")
    assert rc == 1


def test_verify_command_timeout_exits_1_with_its_kind(cli):
    rc, out, _ = cli(
        "verify", "--mode", "boxed", "--reference", "1", "--timeout", "0.2", r"\boxed{(2^{20})!}"
    )
    assert rc == 1 and out.startswith("error") and "timeout: 1" in out


def test_verify_command_bad_reference_exits_2_naming_it(cli):
    rc, _, err = cli("verify", "--mode", "gsm8k", "--reference", "three", "#### 3")
    assert rc == 2 and "--reference" in err and "Traceback" not in err


def test_verify_command_reads_stdin_in_a_real_process(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "judge_rl", "verify", "--mode", "gsm8k", "--reference", "18", "-"],
        input="She sells 16 - 3 - 4 = 9 eggs at $2 each, so 9 * 2 = 18 dollars.\n#### 18 dollars",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and r.stdout.startswith("correct"), r.stderr


def test_label_math_equiv_two_candidates_brace_less_fraction(cli, tmp_path):
    # The old verifier read "\frac 34" as sympy's frac(34) = 0: it chose "\boxed{0}" with
    # p_chosen 1.0 for prompt f0 and tied f1.
    cands = []
    for i, (ref, good, bad) in enumerate(
        [
            (r"\frac 34", r"So the fraction is $\boxed{\frac{3}{4}}$.", r"$\boxed{0}$"),
            (r"\frac{2}{5}", r"The answer is $\boxed{\frac 25}$.", r"$\boxed{\frac 35}$"),
        ]
    ):
        for src, resp in [("good", good), ("bad", bad)]:
            cands.append(
                Candidate(
                    prompt_id=f"f{i}",
                    prompt=f"problem {i}",
                    response=resp,
                    source=src,
                    metadata={"reference": ref},
                )
            )
    inp = tmp_path / "c.jsonl"
    write_candidates(cands, inp)
    out = tmp_path / "p.jsonl"
    rc, _, err = cli(
        "label",
        "--judge",
        "math-equiv",
        "--input",
        str(inp),
        "--output",
        str(out),
        "--no-cache",
        "--run",
        str(tmp_path / "run"),
    )
    assert rc == 0, err
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(got) == 2
    assert all(x["provenance"]["chosen_source"] == "good" for x in got), got
    assert all(x["p_chosen"] == 1.0 for x in got)


def test_command_constants_match_the_library_and_help_stays_light():
    import judge_rl.commands.verify as cmd
    import judge_rl.judge.verify as lib

    assert cmd.MODES == lib.MODES and cmd.DEFAULT_TIMEOUT_S == lib.DEFAULT_TIMEOUT_S
    code = (
        "import sys; from judge_rl.cli import build_parser; build_parser(); "
        "bad=[m for m in ('sympy','math_verify','judge_rl.judge.verify') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
