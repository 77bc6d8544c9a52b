"""Fixtures for the judge-layer tests: comparisons, mock judges, a private cache."""

from __future__ import annotations

import pytest

from judge_rl.types import Candidate, Comparison


def make_comparison(
    a: str, b: str, prompt: str = "What is 2+2?", i: int = 0, reference: str | None = None
) -> Comparison:
    pid = f"q{i}"
    return Comparison(
        prompt_id=pid,
        prompt=prompt,
        a=Candidate(prompt_id=pid, prompt=prompt, response=a, source="model-x"),
        b=Candidate(prompt_id=pid, prompt=prompt, response=b, source="model-y"),
        reference=reference,
    )


@pytest.fixture
def comparisons() -> list[Comparison]:
    """Six pairs: in the first three the longer response is a, in the last three it is b."""
    pairs = [
        ("The answer is 4, since 2 + 2 = 4.", "4"),
        ("Paris is the capital of France.", "Paris"),
        ("Water boils at 100 degrees Celsius at sea level.", "100C"),
        ("no", "No, the Moon is not made of cheese; it is rock."),
        ("7", "Seven: the week has seven days."),
        ("blue", "The sky looks blue because of Rayleigh scattering."),
    ]
    return [make_comparison(a, b, prompt=f"question {i}", i=i) for i, (a, b) in enumerate(pairs)]


@pytest.fixture
def make_comp():
    return make_comparison


@pytest.fixture
def cache_path(tmp_path):
    return tmp_path / "judgments.sqlite"


PAIRWISE_TEMPLATE = (
    "Prompt: {{ prompt }}\nA: {{ response_a }}\nB: {{ response_b }}\nAnswer [[A]], [[B]] or [[C]]."
)


@pytest.fixture
def pairwise_template() -> str:
    return PAIRWISE_TEMPLATE


@pytest.fixture
def write_spec(tmp_path):
    """Write ``judges/<name>/judge.yaml`` (+ template) under tmp_path; returns the spec path."""

    def _write(name: str, yaml_text: str, template: str | None = PAIRWISE_TEMPLATE) -> str:
        d = tmp_path / "judges" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "judge.yaml").write_text(yaml_text)
        if template is not None:
            (d / "prompt.j2").write_text(template)
        return str(d / "judge.yaml")

    return _write
