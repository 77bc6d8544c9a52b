"""Issue 16 (bad specs in H2's files): one ConfigError naming the file and setting, never a
traceback, a hang or unbounded memory."""

from __future__ import annotations

import pytest

from judge_rl.errors import ConfigError
from judge_rl.judge.specs import load_judge, validate_spec

BASE = 'version: "1"\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n'


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"version: '1'\nkind: pairwise\nsystem: caf\xe9\n", "UTF-8"),
        (("[" * 5000).encode(), "judge.yaml"),
        (b"version: 1\nkind: pairwise\nx: " + b"9" * 5000 + b"\n", "judge.yaml"),
        (
            b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
            b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n",
            "judge.yaml",
        ),
    ],
)
def test_unreadable_yaml_is_one_config_error(tmp_path, data, match):
    d = tmp_path / "j"
    d.mkdir()
    (d / "judge.yaml").write_bytes(data)
    with pytest.raises(ConfigError, match=match):
        validate_spec(d)


@pytest.mark.parametrize(
    ("backend", "match"),
    [("os:nope", "not a backend class"), ("[mock]", "must be text"), ("'a b:c'", "module:Class")],
)
def test_bad_backends(write_spec, backend, match):
    path = write_spec("b", BASE.replace("backend: mock", f"backend: {backend}"))
    with pytest.raises(ConfigError, match=match):
        load_judge(path)


def test_jury_cycles_are_refused(tmp_path):
    for name, other in (("ja", "jb"), ("jb", "ja")):
        d = tmp_path / name
        d.mkdir()
        (d / "judge.yaml").write_text(
            f'version: "1"\nkind: jury\nmembers: [../{other}/judge.yaml]\n'
        )
    with pytest.raises(ConfigError, match="cycle"):
        validate_spec(tmp_path / "ja")
    with pytest.raises(ConfigError, match="cycle"):
        load_judge(tmp_path / "ja")


def test_templates_bounded_and_utf8(write_spec, tmp_path):
    path = write_spec("t", BASE, template=None)
    (tmp_path / "judges" / "t" / "prompt.j2").write_bytes(b"{{ response_a }} \xff {{ response_b }}")
    with pytest.raises(ConfigError, match="not UTF-8"):
        validate_spec(path)
    dev = write_spec("z", BASE.replace("prompt.j2", "/dev/zero"), template=None)
    with pytest.raises(ConfigError, match="regular file"):
        validate_spec(dev)


@pytest.mark.parametrize(
    ("extra", "setting"),
    [
        ("pairing: {batch_size: 0}\n", "pairing.batch_size"),
        ("bootstrap: 100000000\n", "bootstrap"),
        ("name: /tmp/elsewhere\n", "name"),
        ("name: ../up\n", "name"),
    ],
)
def test_tournament_spec_settings(tmp_path, extra, setting):
    from judge_rl.tournament.runner import load_spec

    p = tmp_path / "t.yaml"
    p.write_text(
        "version: 1\ncontestants:\n  - file: a.jsonl\n  - file: b.jsonl\njudge: mock-pairwise\n"
        + extra
    )
    with pytest.raises(ConfigError, match=setting):
        load_spec(p)


def test_tournament_spec_not_utf8(tmp_path):
    from judge_rl.tournament.runner import load_spec

    p = tmp_path / "t.yaml"
    p.write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(ConfigError, match="t.yaml"):
        load_spec(p)


def test_label_output_under_a_file_refused_before_work(tmp_path, capsys):
    from judge_rl.cli import main

    (tmp_path / "afile").write_text("x")
    inp = tmp_path / "p.jsonl"
    inp.write_text('{"prompt": "p", "response_a": "x", "response_b": "y"}\n')
    rc = main(
        ["label", "--judge", "mock-pairwise", "--input", str(inp), "--no-cache",
         "--output", str(tmp_path / "afile" / "o.jsonl"), "--run", str(tmp_path / "r")]
    )  # fmt: skip
    assert rc == 2 and "--output" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
