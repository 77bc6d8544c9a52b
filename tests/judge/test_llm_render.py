"""Issue 19 item 2: a compiled judge template renders from a plain dict of globals (Jinja's
ChainMap is copied and iterated in Python on every render), with the same output and the same
sandbox."""

from __future__ import annotations

import pytest

from judge_rl.errors import ConfigError
from judge_rl.judge.llm import compile_template

TEMPLATE = (
    "{% set ns = namespace(n=0) %}{% for i in range(2) %}{% set ns.n = ns.n + i %}{% endfor %}"
    "{{ dict(a=1)['a'] }} {{ ns.n }} {{ prompt }} | {{ response_a }} | {{ response_b }}"
)


def test_globals_are_a_plain_dict_and_render_the_same():
    t = compile_template(TEMPLATE, "pairwise")
    assert type(t.globals) is dict
    assert sorted(t.globals) == ["dict", "namespace", "range"]  # cycler, joiner, lipsum removed
    assert t.render(prompt="q", response_a="x", response_b="y") == "1 1 q | x | y"


def test_the_sandbox_still_refuses_attribute_walks():
    from judge_rl.backends.mock import MockBackend
    from judge_rl.judge import LLMJudge

    judge = LLMJudge(
        MockBackend(), "{{ prompt.__class__.__mro__ }}{{ response_a }}{{ response_b }}"
    )
    with pytest.raises(ConfigError, match="unsafe"):
        judge._render(prompt="q", response_a="a", response_b="b")


PLAIN_TEMPLATES = [
    "Which is better?\n[Prompt] {{ prompt }}\n[A] {{ response_a }}\n[B] {{ response_b }}\n",
    "{{prompt}}{{response_a}}{{response_b}}",
    "windows\r\nline ends {{ prompt }}\r\n{{ response_a }} {{ response_b }}\rend\r\n",
    "ws control   {{- prompt -}}   \n {{ response_a }}\n\n{{ response_b }}  ",
    "{% raw %}{{ not a var }}{% endraw %} {{ prompt }} {{ response_a }} {{ response_b }}",
    "{# a comment #}{{ response_a }}|{{ response_b }}|{{ reference }}|{{ prompt }}",
    "é ✓ {{ prompt }}\u2028{{ response_a }}\x0c{{ response_b }}\n\n",
]


@pytest.mark.parametrize("text", PLAIN_TEMPLATES)
def test_a_plain_template_is_joined_as_jinja_renders_it(text):
    from judge_rl.backends.mock import MockBackend
    from judge_rl.judge import LLMJudge

    judge = LLMJudge(MockBackend(), text)
    assert judge.template.judge_rl_concat is not None  # the joined path is taken
    for values in [
        {"prompt": "q", "response_a": "x", "response_b": "y", "reference": None},
        {"prompt": "{{ prompt }}", "response_a": "", "response_b": "\n", "reference": "r"},
        {"prompt": 1, "response_a": 2.5, "response_b": ["l"], "reference": {"k": 1}},
    ]:
        assert judge._render(**values) == judge.template.render(**values)


def test_a_template_with_logic_is_rendered_by_jinja():
    from judge_rl.backends.mock import MockBackend
    from judge_rl.judge import LLMJudge

    for text in [
        TEMPLATE,
        "{{ prompt | upper }} {{ response_a }} {{ response_b }}",
        "{% if reference %}{{ reference }}{% endif %}{{ response_a }}{{ response_b }}",
        "{{ prompt ~ '!' }} {{ response_a }} {{ response_b }}",
        "{{ 'x' }} {{ response_a }} {{ response_b }}",
    ]:
        assert LLMJudge(MockBackend(), text).template.judge_rl_concat is None


def test_builtin_plain_templates_render_as_jinja_renders_them():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "judge_rl" / "_builtin" / "judges"
    joined = 0
    for path in sorted(root.glob("*/prompt.j2")):
        spec = yaml.safe_load((path.parent / "judge.yaml").read_text())
        kind = spec["kind"]
        t = compile_template(path.read_text(), kind, mode=spec.get("rubric_mode", "joint"))
        if t.judge_rl_concat is None:
            continue
        joined += 1
        values = {
            "prompt": "Q ¿",
            "response_a": "first\n[[A]]",
            "response_b": "second",
            "response": "only",
            "reference": "ref",
            "scale_min": 1,
            "scale_max": 10,
        }
        from judge_rl.backends.mock import MockBackend
        from judge_rl.judge import LLMJudge

        judge = LLMJudge(MockBackend(), path.read_text(), kind=kind)
        assert judge._render(**values) == t.render(**values), path
    assert joined >= 3  # pairwise, pairwise-reference, pointwise-embedded at least


def test_a_missing_variable_still_fails_as_jinja_fails():
    from judge_rl.backends.mock import MockBackend
    from judge_rl.judge import LLMJudge
    from judge_rl.judge.llm import _InputError

    judge = LLMJudge(MockBackend(), "{{ response_a }} {{ response_b }} {{ reference }}")
    assert judge.template.judge_rl_concat is not None
    with pytest.raises(_InputError, match="reference"):
        judge._render(response_a="a", response_b="b")
