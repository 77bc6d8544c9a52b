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
