"""One path from prompts to candidates: ``judge-rl generate`` and the pipeline's ``generate``
stage both run :func:`judge_rl.pipeline.generate.generate` (issue 13 item 1), and the hf backend
prefills each prompt once for its n samples (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judge_rl.errors import ConfigError, DataError
from judge_rl.pipeline.generate import GenerateConfig, GenerateProgress, generate
from judge_rl.types import PromptItem

PROMPTS = [
    {"id": "add", "prompt": "What is 2+3?", "reference": "5", "category": "math"},
    {"id": "sky", "prompt": "What colour is the sky?", "category": "open"},
    {"id": "sub", "prompt": "What is 9-4?", "reference": "5", "category": "math"},
]


def _items() -> list[PromptItem]:
    return [
        PromptItem(
            prompt_id=p["id"],
            prompt=p["prompt"],
            reference=p.get("reference"),
            category=p.get("category"),
        )
        for p in PROMPTS
    ]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    """The tiny model folder loaded once, as the pipeline's Context loads a policy."""
    from judge_rl.models import load_causal_lm, load_tokenizer

    return load_causal_lm(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


def test_command_and_stage_give_identical_candidates(tiny_model_dir, loaded, tmp_path):
    """Same seed, same settings: the CLI (which loads the model folder itself) and the stage
    (given the loaded model, as the pipeline shares it) write the same candidates, ids and
    metadata included; both prefill each prompt once for its n = 3 samples. Before: the stage
    had its own sampler, no ``sampling``/``finish_reason``/token counts, other ids."""
    from judge_rl.cli import main

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    out = tmp_path / "cli.jsonl"
    rc = main(
        [
            "generate", "--model", str(tiny_model_dir), "--prompts", str(prompts),
            "--n", "3", "--temperature", "1.0", "--max-new-tokens", "5", "--seed", "11",
            "--batch-size", "2", "--source", "tiny", "--output", str(out),
            "--run", str(tmp_path / "run"),
        ]
    )  # fmt: skip
    assert rc == 0
    cli_rows = _rows(out)
    summary = json.loads((tmp_path / "run" / "log.json").read_text())["generate"]
    assert summary["summary"]["prefills"] == 3  # one per prompt, not 9

    cfg = GenerateConfig(
        model=str(tiny_model_dir),
        n=3,
        temperature=1.0,
        max_new_tokens=5,
        seed=11,
        batch_size=2,
        source="tiny",
    )
    model, tok = loaded
    stage = generate(cfg, _items(), model, tok)
    assert stage.section.prefills == 3
    assert [c.model_dump(mode="json") for c in stage.candidates] == cli_rows
    assert len({r["response"] for r in cli_rows}) > 1  # real samples, not one constant text

    meta = stage.candidates[0].metadata
    assert {"sample", "sampling", "finish_reason", "prompt_tokens", "completion_tokens"} <= set(
        meta
    )
    assert meta["reference"] == "5" and meta["category"] == "math"
    assert [c.metadata["sample"] for c in stage.candidates[:3]] == [0, 1, 2]
    assert meta["sampling"] == {
        "backend": "hf",
        "model": str(tiny_model_dir),
        "n": 3,
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": 5,
        "seed": 11,
    }
    assert "reference" not in stage.candidates[3].metadata  # the sky prompt has none


def test_resume_appends_only_what_is_missing(loaded, tmp_path):
    """With ``output`` set: a partial last line is dropped, done prompts are skipped (the
    progress callback says how many, before the model is used), the rest is appended."""
    model, tok = loaded
    out = tmp_path / "c.jsonl"
    cfg = GenerateConfig(model="tiny", n=2, max_new_tokens=3, source="t", output=str(out))
    first = generate(cfg, _items()[:2], model, tok)
    assert first.section.summary.candidates == 4 and len(_rows(out)) == 4
    with out.open("a") as f:
        f.write('{"id": "c-partial", "prompt_id": "su')
    events: list[GenerateProgress] = []
    second = generate(cfg, _items(), model, tok, on_progress=events.append)
    assert [c.prompt_id for c in second.candidates] == ["sub", "sub"]
    assert second.section.summary.skipped_done == 2 and second.section.summary.prompts == 3
    assert not events[0].ready and events[0].section.summary.skipped_done == 2
    assert events[-1].done == events[-1].todo == 1
    rows = _rows(out)
    assert len(rows) == 6 and [r["prompt_id"] for r in rows].count("sub") == 2
    assert rows[:4] == [c.model_dump(mode="json") for c in first.candidates]


def test_stage_settings_are_checked_before_loading():
    with pytest.raises(ConfigError, match="top_p"):
        generate(GenerateConfig(top_p=0), _items())
    with pytest.raises(ConfigError, match="greedy"):
        generate(GenerateConfig(n=2, temperature=0), _items())
    with pytest.raises(ConfigError, match="base_urls needs backend openai"):
        generate(GenerateConfig(base_urls=["http://x/v1"]), _items())
    with pytest.raises(DataError, match="no prompts"):
        generate(GenerateConfig(), [])


def test_pipeline_stage_runs_the_library_and_logs_its_section(loaded, tiny_model_dir, tmp_path):
    """The runner's ``generate`` stage uses the model its Context holds (shared with other
    stages), gives the library's candidates and records the typed section in the run log."""
    from judge_rl.models import resolve_model
    from judge_rl.pipeline import runner
    from judge_rl.runlog import new_log

    ctx = runner.Context(run_dir=tmp_path, spec=None, log=new_log("run", "t"))  # type: ignore[arg-type]
    ctx.models[resolve_model(str(tiny_model_dir))] = loaded
    cfg = GenerateConfig(model=str(tiny_model_dir), n=2, max_new_tokens=3, seed=5)
    out = runner._generate(ctx, "generate", cfg, {"prompts": _items()})
    again = generate(cfg, _items(), *loaded)
    assert [c.id for c in out.candidates] == [c.id for c in again.candidates]
    logged = ctx.log.generate  # a typed section of the run log
    assert logged.summary.candidates == 6 and logged.summary.prefills == 3
    assert logged.source == "base" and logged.sampling.n == 2
    assert "generate" not in ctx.log.extra
    # what a resumed run reads back from stages/generate.json
    assert runner.KINDS["generate"].output.model_validate_json(out.model_dump_json()) == out


def test_stage_through_an_openai_compatible_server(tmp_path):
    """The same function samples through a server (here one that ignores ``n``: the missing
    samples are asked for again); the source defaults to the model name sent to it."""
    pytest.importorskip("aiohttp")
    from judge_rl.backends._fakeserver import start_in_thread

    cfg = GenerateConfig(
        backend="openai", model="served", n=3, temperature=0.7, source=None, max_retries=0
    )
    with start_in_thread(reply="echo", ignore_n=True) as srv:
        cfg.base_urls = [srv.url]
        out = generate(cfg, _items())
    assert len(out.candidates) == 9 and {c.source for c in out.candidates} == {"served"}
    assert [c.metadata["sample"] for c in out.candidates[:3]] == [0, 1, 2]
    assert out.candidates[0].response.startswith("echo: What is 2+3?")
    assert out.section.summary.attempts == 9 and out.section.prefills is None
    assert out.section.backend is not None and out.section.transport is not None
