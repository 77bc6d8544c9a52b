import time

from tests.conftest import run_cli


def test_help_is_fast_and_lists_commands():
    t = time.perf_counter()
    r = run_cli("--help")
    elapsed = time.perf_counter() - t
    assert r.returncode == 0, r.stderr
    for cmd in ("data", "label", "train-rm", "ppo", "tournament", "report", "demo"):
        assert cmd in r.stdout
    # A subprocess start included: the budget is generous, the point is no torch import.
    assert elapsed < 5


def test_help_imports_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import sys; from judge_rl.cli import build_parser; build_parser(); "
        "bad=[m for m in ('torch','transformers','openai','vllm','pandas','scipy') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_command_is_exit_2():
    assert run_cli().returncode == 2
