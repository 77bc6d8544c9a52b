"""Judge specs: every shipped spec validates; bad specs fail with the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from judge_rl.errors import ConfigError
from judge_rl.judge import OrderedJudge, compare_sync, list_judges, load_judge
from judge_rl.judge.specs import KEYS, find_spec, read_spec, search_path, validate_spec

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.parent.name for p in (ROOT / "judges").glob("*/judge.yaml"))
REQUIRED = {
    "pairwise",
    "pairwise-reference",
    "pointwise-10",
    "rubric-hh",
    "gsm8k-exact",
    "math-equiv",
    "jury-example",
    "pairwise-embedded",
    "pointwise-embedded",
    "rubric-hh-embedded",
}


def test_required_specs_are_shipped():
    assert set(SHIPPED) >= REQUIRED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_spec_validates(name):
    spec = validate_spec(ROOT / "judges" / name)
    assert spec["version"] and spec["kind"] in KEYS
    assert set(spec) <= KEYS[spec["kind"]]


def test_api_specs_build_without_contacting_anything(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    for name in ("pairwise", "pairwise-reference", "pointwise-10", "rubric-hh"):
        judge = load_judge(ROOT / "judges" / name)
        fp = judge.fingerprint
        assert fp.backend == "openai" and fp.version == "1"
        assert "sk-test" not in fp.model_dump_json()


def test_verifier_and_mock_specs_judge(make_comp):
    v = load_judge("gsm8k-exact")
    (j,) = compare_sync(v, [make_comp("so #### 12", "#### 13", reference="12")])
    assert j.winner == "a"
    m = load_judge("mock-pairwise")
    assert isinstance(m, OrderedJudge) and m.order == "both"
    (j,) = compare_sync(m, [make_comp("long answer here", "short")])
    assert j.winner == "a" and j.consistent


def test_unknown_key_names_file_and_key(write_spec):
    path = write_spec(
        "bad",
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\ntemprature: 0\n",
    )
    with pytest.raises(ConfigError) as e:
        load_judge(path)
    assert str(e.value).startswith(f"{path}: temprature: unknown key")


def test_template_variable_the_judge_cannot_supply(write_spec):
    path = write_spec(
        "badvar",
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n",
        template="{{ response_a }} {{ response_b }} {{ rubric_text }}",
    )
    with pytest.raises(ConfigError, match=r"prompt\.j2: rubric_text: template variable"):
        validate_spec(path)
    with pytest.raises(ConfigError, match="rubric_text"):
        load_judge(path)


@pytest.mark.parametrize(
    ("yaml_text", "match"),
    [
        ("kind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n", "version"),
        ("version: 1\nkind: judge\n", "kind must be one of"),
        (
            "version: 1\nkind: pairwise\nbackend: nope\nmodel: m\ntemplate: prompt.j2\n",
            "unknown backend",
        ),
        (
            "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\norder: twice\n",
            "order",
        ),
        ("version: 1\nkind: pairwise\nbackend: mock\nmodel: m\n", "template: is required"),
        ("version: 1\nkind: verifier\ntemplate: x\n", "template: unknown key"),
        (
            "version: 1\nkind: pointwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\nscale: [5, 1]\n",
            "scale",
        ),
        ("version: 1\nkind: jury\nmembers: []\n", "members"),
        ("- a list\n", "mapping"),
        ("version: 1\nkind: [unclosed\n", "not valid YAML"),
        (
            "version: 1\nkind: rubric\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n"
            "criteria:\n  - name: x\n    question: q\n    wieght: 2\n",
            r"criteria\[0\]\.wieght",
        ),
        (
            "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n"
            "backend_options: {rulez: longer}\n",
            "backend_options.rulez",
        ),
    ],
)
def test_bad_specs(write_spec, yaml_text, match):
    path = write_spec("bad", yaml_text)
    with pytest.raises(ConfigError, match=match) as e:
        load_judge(path)
    assert path in str(e.value)


def test_search_path_order(tmp_path, monkeypatch, write_spec):
    spec = "version: 7\nkind: verifier\nmode: gsm8k\n"
    write_spec("gsm8k-exact", spec, template=None)
    monkeypatch.setenv("JUDGE_RL_JUDGES", str(tmp_path / "judges"))
    assert search_path()[0] == tmp_path / "judges"
    assert find_spec("gsm8k-exact") == tmp_path / "judges" / "gsm8k-exact" / "judge.yaml"
    assert read_spec(find_spec("gsm8k-exact"))["version"] == "7"
    assert "gsm8k-exact" in list_judges() and "pairwise" in list_judges()


def test_unknown_judge_lists_known():
    with pytest.raises(ConfigError, match=r"unknown judge 'nonesuch' \(known: .*pairwise"):
        load_judge("nonesuch")


def test_overrides(write_spec, make_comp):
    path = write_spec(
        "m",
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\norder: fixed\n",
    )
    judge = load_judge(path, overrides={"order": "both", "model": "other", "concurrency": 3})
    assert judge.order == "both" and judge.fingerprint.model == "other"
    with pytest.raises(ConfigError, match="cannot override"):
        load_judge(path, overrides={"criteria": []})
