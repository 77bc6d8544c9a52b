"""Issue 19 item 2: a template of only text and ``{{ name }}`` (the shipped pairwise ones) is
compiled without importing Jinja (~30-45 ms of ``judge-rl label``'s start, before its first
request), with exactly the pieces, variables and errors Jinja's own parse gives."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from judge_rl.errors import ConfigError
from judge_rl.judge.llm import _concat_plan, _environment, _plain_plan, compile_template

# fragments that make plain templates and every near miss of one
FRAGMENTS = [
    "{{ prompt }}",
    "{{response_a}}",
    "{{  response_b  }}",
    "{{ reference }}",
    "{{ x1 }}",
    "{{ true }}",
    "{{ None }}",
    "{{ not }}",
    "{{ in }}",
    "{{ if }}",
    "{{ é }}",
    "{{ 1 }}",
    "{{- prompt }}",
    "{{ prompt -}}",
    "{{+ prompt }}",
    "{{\tprompt }}",
    "{{\nprompt }}",
    "{{ prompt.x }}",
    "{{ prompt|upper }}",
    "{{ a b }}",
    "{{",
    "}}",
    "{",
    "}",
    "{%",
    "%}",
    "{# c #}",
    "{% raw %}{{ x }}{% endraw %}",
    "#}",
    "{{{ prompt }}}",
    "{{ prompt }}}",
    "text",
    " ",
    "\n",
    "\r\n",
    "\r",
    "é✓",
    "[[A]]",
    "\\",
    "'",
    '"',
    "{{ _ }}",
    "{{ _a }}",
]


def _jinja(text):
    from jinja2 import TemplateSyntaxError, meta

    env = _environment()
    try:
        ast = env.parse(text)
    except TemplateSyntaxError:
        return "error", None
    return _concat_plan(ast), meta.find_undeclared_variables(ast)


def test_the_plain_plan_is_jinjas_wherever_it_gives_one():
    rng = random.Random(19)
    taken = 0
    for _ in range(6000):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 7)))
        ours = _plain_plan(text)
        if ours is None:
            continue  # Jinja parses it, as before
        taken += 1
        plan, used = _jinja(text)
        assert plan == ours, text
        assert used == {name for _, name in ours if name is not None}, text
    assert taken > 300  # the generator makes plain templates too


@pytest.mark.parametrize(
    "text",
    [
        "{{ prompt }}{{ response_a }}",
        "a{{ prompt }}b",
        "",
        "}} {{ prompt }} }",
        "{ {{ prompt }}",
        "trailing newline kept\n{{ response_b }}\n",
    ],
)
def test_plain_templates_take_the_plain_path(text):
    assert _plain_plan(text) == _jinja(text)[0]


@pytest.mark.parametrize(
    "text",
    ["{{{ prompt }}", "{{ true }}", "{{ prompt -}}", "a\r\n{{ prompt }}", "{# c #}{{ prompt }}"],
)
def test_near_misses_go_to_jinja(text):
    assert _plain_plan(text) is None


def test_a_plain_templates_variables_are_checked_as_before():
    with pytest.raises(ConfigError, match="'score' cannot be supplied"):
        compile_template("{{ prompt }}{{ response_a }}{{ response_b }}{{ score }}", "pairwise")
    with pytest.raises(ConfigError, match="never shows 'response_b'"):
        compile_template("{{ prompt }}{{ response_a }}", "pairwise")


def test_a_plain_template_renders_through_jinja_when_asked():
    t = compile_template("{{ prompt }}|{{ response_a }}|{{ response_b }}", "pairwise")
    assert t.render(prompt="q", response_a=1, response_b=[2]) == "q|1|[2]"
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError, match="response_b"):
        t.render(prompt="q", response_a="a")


def test_loading_and_using_the_builtin_pairwise_judge_does_not_import_jinja():
    code = (
        "import asyncio, json, sys\n"
        "from judge_rl.backends.mock import MockBackend\n"
        "from judge_rl.judge.specs import validate_spec, load_judge\n"
        "from judge_rl.types import Candidate, Comparison\n"
        "validate_spec('pairwise')\n"
        "j = load_judge('pairwise', overrides={'backend': 'mock'}, cache=None)\n"
        "a = Candidate(prompt_id='p', prompt='q', response='x', source='m1')\n"
        "b = Candidate(prompt_id='p', prompt='q', response='yy', source='m2')\n"
        "out = asyncio.run(j.compare([Comparison(prompt_id='p', prompt='q', a=a, b=b)]))\n"
        "print(json.dumps([out[0].ok, 'jinja2' in sys.modules]))\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1]) == [True, False]
