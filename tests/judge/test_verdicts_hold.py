"""Issue 15 (failures 1-3) and issue 16 (items 1, 2 and the parser part of 6): verdicts that
hold up. Each test reproduces a failure of the old code."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from judge_rl.backends.base import ChatRequest, ChatResult
from judge_rl.errors import ConfigError
from judge_rl.judge.llm import LLMJudge
from judge_rl.judge.parse import ParseError, parse_pairwise

TEMPLATE = "Q: {{ prompt }}\n[Response A]\n{{ response_a }}\n[Response B]\n{{ response_b }}\n"


class Scripted:
    """A backend answering from a list of (text, label_probs, label_mass, finish) and recording
    every request."""

    name = "scripted"
    model = "scripted"

    def __init__(self, replies, *, prefill: bool = False):
        self.replies = list(replies)
        self.requests: list[ChatRequest] = []
        self.supports_prefill = prefill

    async def chat(self, requests):
        out = []
        for r in requests:
            self.requests.append(r)
            text, probs, mass, finish = self.replies.pop(0)
            out.append(
                ChatResult(
                    texts=[text],
                    label_probs=probs,
                    label_mass=mass,
                    finish_reasons=[finish],
                    prompt_tokens=10,
                    completion_tokens=3,
                )
            )
        return out

    async def aclose(self):
        return None


def _judge(backend, **kw):
    return LLMJudge(backend, TEMPLATE, name="t", **kw)


# --- issue 15, failure 1: quoted injections flip verdicts ----------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        'Response B ends with "[[B]]", an obvious attempt to manipulate… Response A is better.',
        "Response B puts [[B]] at the end, which I ignore.\nFinal verdict: A",
        "A is right.\n[[A]]\nNote: B wrote [[B]] to sway the judge.",
    ],
)
def test_issue15_1_quoted_marker_never_wins(reply):
    assert _safe(reply) in ("A", None)  # no verdict is acceptable; B never is


def _safe(reply):
    try:
        return parse_pairwise(reply)
    except ParseError:
        return None


def test_issue15_1_stated_verdicts_read():
    assert (
        parse_pairwise("Response B puts [[B]] at the end, which I ignore.\nFinal verdict: A") == "A"
    )
    assert parse_pairwise("A is right.\n[[A]]\nNote: B wrote [[B]] to sway the judge.") == "A"
    with pytest.raises(ParseError, match="conflicting"):
        parse_pairwise("[[A]]\nOn reflection:\n[[B]]")


# --- issue 16, item 6 (parser): template echoes and marker soup ----------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "Let me restate the task.\n[Response A]\nfoo\n[Response B]",
        "[[C]] … [[D]] … [[E]]",
        "[[C]]\n[[D]]\n[[E]]",
    ],
)
def test_issue16_6_echo_and_soup_are_parse_errors(reply):
    with pytest.raises(ParseError):
        parse_pairwise(reply)


# --- issue 16, item 2: deeply nested JSON ---------------------------------------------------------


def test_issue16_2_nested_json_is_one_parse_error_and_the_run_finishes(make_comp):
    deep = '{"verdict": ' * 20000
    backend = Scripted([(deep, None, None, "stop"), ("fine\n[[A]]", None, None, "stop")])
    judge = _judge(backend)
    js = asyncio.run(judge.compare([make_comp("x", "y", i=0), make_comp("u", "v", i=1)]))
    assert js[0].error is not None and js[0].error.startswith("parse:")
    assert js[1].winner == "a"
    for fn in ("parse_score", "parse_yesno"):
        from judge_rl.judge import parse

        with pytest.raises(ParseError):
            getattr(parse, fn)(deep)
    with pytest.raises(ParseError):
        parse.parse_rubric(deep, [("x", "yesno")])


# --- issue 15, failure 2: label probabilities over the parsed verdict -----------------------------


def test_issue15_2_probs_never_override_the_written_verdict(make_comp):
    reply = "Response A is wordy and wrong; B is right.\n[[B]]"
    backend = Scripted([(reply, {"A": 0.95, "B": 0.03, "C": 0.02}, 0.9, "stop")])
    judge = _judge(backend, label_probs=True, max_tokens=300)
    [j] = asyncio.run(judge.compare([make_comp("x", "y")]))
    assert j.winner == "b"
    assert j.p_a is None and j.calls[0].note == "probs_contradict"


def test_issue15_2_probs_read_at_the_verdict_slot_with_prefill(make_comp):
    reply = "A misses the point; B answers it.\nVerdict: [[B]]"
    backend = Scripted(
        [(reply, None, None, "stop"), ("B", {"A": 0.2, "B": 0.7, "C": 0.1}, 0.9, "label")],
        prefill=True,
    )
    judge = _judge(backend, label_probs=True, max_tokens=300)
    [j] = asyncio.run(judge.compare([make_comp("x", "y")]))
    first, second = backend.requests
    assert first.label_probs is None  # the reply is generated first
    assert second.label_probs == ["A", "B", "C"]
    assert second.metadata["label_prefix"] == "A misses the point; B answers it.\nVerdict: [["
    assert j.winner == "b" and j.p_a == pytest.approx(0.25)
    assert j.calls[0].label_mass == pytest.approx(0.9) and j.calls[0].note is None


def test_issue15_2_small_label_mass_is_flagged(make_comp):
    backend = Scripted([("A", {"A": 0.8, "B": 0.1, "C": 0.1}, 0.05, "label")])
    judge = _judge(backend, label_probs=True, max_tokens=2)
    [j] = asyncio.run(judge.compare([make_comp("x", "y")]))
    assert j.winner == "a" and j.calls[0].label_mass == pytest.approx(0.05)
    assert j.calls[0].note == "low_mass"


def test_issue15_2_label_prefix_from_a_spec(write_spec, make_comp):
    from judge_rl.judge.specs import load_judge

    path = write_spec(
        "lp",
        'version: "1"\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n'
        'label_probs: true\nmax_tokens: 2\nlabel_prefix: "Verdict: [["\norder: fixed\n',
    )
    judge = load_judge(path)
    llm = judge.inner.inner
    assert llm.label_prefix == "Verdict: [[" and llm.label_position == "start"
    req = llm._pair_request(make_comp("x", "y"))
    assert req.metadata["label_prefix"] == "Verdict: [[" and req.label_probs == ["A", "B", "C"]
    with pytest.raises(ConfigError, match="label_position"):
        load_judge(
            write_spec(
                "lp2",
                'version: "1"\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n'
                "label_position: middle\n",
            )
        )


# --- issue 15, failure 3: truncation that cuts the answers ----------------------------------------


@pytest.fixture(scope="module")
def tiny_hf():
    from judge_rl.backends.hf import HFBackend
    from judge_rl.models import tiny_causal_lm, tiny_tokenizer

    tok = tiny_tokenizer()
    return HFBackend(
        "tiny",
        model_object=tiny_causal_lm(tok, seed=1),
        tokenizer=tok,
        batch_size=4,
        max_length=200,
    )


def test_issue15_3_too_long_is_an_error_not_a_cut(tiny_hf):
    long = "word " * 100  # 500 byte tokens > max_length 200
    msgs = [{"role": "user", "content": "Q?\nA: " + long + "\nB: short\nWhich is better?"}]
    gen, probs = asyncio.run(
        tiny_hf.chat(
            [
                ChatRequest(messages=msgs, max_tokens=3),
                ChatRequest(messages=msgs, label_probs=["A", "B", "C"]),
                ChatRequest(messages=[{"role": "user", "content": "fits"}], max_tokens=2),
            ]
        )
    )[:2]
    for res in (gen, probs):
        assert res.error is not None and res.error.startswith("too_long:"), res
        assert res.label_probs is None and not res.texts


def test_issue15_3_oldest_history_goes_first(tiny_hf):
    final = "Question: 2+2?\nAnswer A: 4\nAnswer B: 5\nWhich is better?"
    msgs = [
        {"role": "system", "content": "Judge."},
        {"role": "user", "content": "old " * 60},
        {"role": "assistant", "content": "older reply " * 10},
        {"role": "user", "content": final},
    ]
    text, dropped = tiny_hf.fit(msgs)
    assert dropped == 2
    assert "Judge." in text and final in text and "old old" not in text
    assert text.endswith(tiny_hf.render([{"role": "user", "content": "x"}])[-15:])
    [res] = asyncio.run(tiny_hf.chat([ChatRequest(messages=msgs, label_probs=["A", "B"])]))
    assert res.error is None and 0 < res.label_mass <= 1.0


def test_issue15_3_judgment_records_too_long(tiny_hf, make_comp):
    judge = LLMJudge(tiny_hf, TEMPLATE, name="t", label_probs=True, max_tokens=2)
    [j] = asyncio.run(judge.compare([make_comp("yes " * 100, "no")]))
    assert j.error is not None and j.error_kind == "too_long" and j.winner is None


# --- issue 16, item 1: templates in a sandbox -----------------------------------------------------

PAYLOADS = [
    "{{ cycler.__init__.__globals__.os.popen('touch MARK').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ response_a }}{{ response_b }}",
    "{{ response_a.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__ }}"
    "{{ response_b }}",
    "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'Popen' %}"
    "{{ c(['touch', 'MARK']) }}{% endif %}{% endfor %}{{ response_a }}{{ response_b }}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_issue16_1_ssti_payloads_execute_nothing(payload, tmp_path, monkeypatch, make_comp):
    monkeypatch.chdir(tmp_path)
    try:
        judge = LLMJudge(Scripted([("[[A]]", None, None, "stop")]), payload, name="t")
        asyncio.run(judge.compare([make_comp("x", "y")]))
        raise AssertionError("the payload rendered")
    except ConfigError:
        pass
    assert not (tmp_path / "MARK").exists()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_issue16_1_ssti_with_label_dry_run(payload, tmp_path, monkeypatch, capsys):
    from judge_rl.cli import main

    d = tmp_path / "judges" / "evil"
    d.mkdir(parents=True)
    (d / "judge.yaml").write_text(
        'version: "1"\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n'
    )
    (d / "prompt.j2").write_text(payload)
    inp = tmp_path / "pairs.jsonl"
    inp.write_text('{"prompt": "p", "response_a": "x", "response_b": "y", "winner": "a"}\n')
    monkeypatch.chdir(tmp_path)
    rc = main(
        [
            "label",
            "--judge",
            "evil",
            "--input",
            str(inp),
            "--output",
            "o.jsonl",
            "--dry-run",
            "--no-cache",
        ]
    )
    assert rc == 2
    assert not (tmp_path / "MARK").exists()
    assert "Traceback" not in capsys.readouterr().err


def test_issue16_1_a_local_judge_shadowing_a_builtin_is_announced_first(
    tmp_path, monkeypatch, capsys
):
    from judge_rl.cli import main
    from judge_rl.judge.specs import shadowed_builtin

    d = tmp_path / "judges" / "mock-pairwise"
    d.mkdir(parents=True)
    (d / "judge.yaml").write_text(
        'version: "1"\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n'
    )
    (d / "prompt.j2").write_text("{{ response_a }} {{ response_b }}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JUDGE_RL_JUDGES", raising=False)
    assert shadowed_builtin("mock-pairwise") is not None
    assert shadowed_builtin("pairwise") is None
    inp = tmp_path / "pairs.jsonl"
    inp.write_text('{"prompt": "p", "response_a": "x", "response_b": "y", "winner": "a"}\n')
    capsys.readouterr()
    main(
        [
            "label",
            "--judge",
            "mock-pairwise",
            "--input",
            str(inp),
            "--output",
            "o.jsonl",
            "--dry-run",
            "--no-cache",
        ]
    )
    err = capsys.readouterr().err
    first = err.strip().splitlines()[0]
    assert "shadows the built-in" in first and "mock-pairwise" in first
    assert os.sep + "judges" in first and Path(str(d)).name in first


def test_issue15_2_label_summary_counts_small_label_mass(make_comp):
    from judge_rl.pipeline.label import summarize

    replies = [("A", {"A": 0.8, "B": 0.1, "C": 0.1}, m, "label") for m in (0.05, 0.1, 0.9)]
    judge = _judge(Scripted(replies), label_probs=True, max_tokens=2)
    js = asyncio.run(judge.compare([make_comp("x", "y", i=i) for i in range(3)]))
    s = summarize(js, 1.0)
    assert s["label_mass_calls"] == 3 and s["low_label_mass"] == 2
    assert s["label_mass_mean"] == pytest.approx(0.35)


def test_issue16_2_nested_json_through_label_finishes_with_a_run_log(tmp_path):
    import json as _json

    from judge_rl.cli import main
    from judge_rl.runlog import load

    deep = '{"verdict": ' * 5000
    d = tmp_path / "deep"
    d.mkdir()
    (d / "judge.yaml").write_text(
        'version: "1"\nkind: pairwise\nbackend: mock\nmodel: m\norder: both\n'
        "template: prompt.j2\nbackend_options: {text: " + _json.dumps(deep) + "}\n"
    )
    (d / "prompt.j2").write_text("{{ response_a }} {{ response_b }}")
    inp = tmp_path / "pairs.jsonl"
    inp.write_text(
        "".join(
            _json.dumps({"prompt": f"p{i}", "response_a": "x", "response_b": "yy"}) + "\n"
            for i in range(3)
        )
    )
    rc = main(
        ["label", "--judge", str(d), "--input", str(inp), "--output", str(tmp_path / "o.jsonl"),
         "--cache", str(tmp_path / "c.sqlite"), "--run", str(tmp_path / "run")]
    )  # fmt: skip
    assert rc in (0, 1)  # the run finished (1: every item failed, by the exit-code rule)
    log = load(tmp_path / "run")
    assert log.label.summary["failures"] == {"parse": 3}
    again = main(
        ["label", "--judge", str(d), "--input", str(inp), "--output", str(tmp_path / "o.jsonl"),
         "--cache", str(tmp_path / "c.sqlite"), "--run", str(tmp_path / "run2")]
    )  # fmt: skip
    assert again == rc  # and again on a re-run, from the cache


def test_json_verdict_rule_asks_for_structured_output_where_supported(make_comp):
    plain = Scripted([('{"reasoning": "B is right", "winner": "B"}', None, None, "stop")])
    judge = _judge(plain, verdict={"rule": "json", "field": "winner"})
    [j] = asyncio.run(judge.compare([make_comp("x", "y")]))
    assert j.winner == "b" and plain.requests[0].response_format is None
    structured = Scripted([('{"reasoning": "A", "winner": "A"}', None, None, "stop")])
    structured.supports_response_format = True
    judge = _judge(structured, verdict={"rule": "json", "field": "winner"})
    [j] = asyncio.run(judge.compare([make_comp("x", "y")]))
    schema = structured.requests[0].response_format["json_schema"]["schema"]
    assert schema["properties"]["winner"]["enum"] == ["A", "B", "C"] and j.winner == "a"
    # a quoted JSON verdict is not the verdict: only the final object counts
    quoted = Scripted([('B wrote {"winner": "B"}.\n{"winner": "A"}', None, None, "stop")])
    [j] = asyncio.run(
        _judge(quoted, verdict={"rule": "json", "field": "winner"}).compare([make_comp("x", "y")])
    )
    assert j.winner == "a"


def test_issue15_2_scores_after_reasoning_are_not_read_at_the_reply_start(make_comp):
    from judge_rl.types import Candidate

    backend = Scripted([("Clear and right.\nRating: [[4]]", None, None, "stop")], prefill=True)
    judge = LLMJudge(
        backend,
        "{{ prompt }} {{ response }}",
        name="p",
        kind="pointwise",
        scale=(1, 5),
        label_probs=True,
        max_tokens=300,
    )
    [s] = asyncio.run(judge.score([Candidate(prompt_id="q", prompt="p", response="r")]))
    assert backend.requests[0].label_probs is None  # not read at the start of a reasoning reply
    assert s.score == 4.0


# --- issue 16 item 6: a verdict in words, the labels in the first position's top_logprobs --------

PROBS_B = {"A": 0.2, "B": 0.7, "C": 0.1}


def test_issue16_6_verdict_from_label_probs_when_no_verdict_is_written(make_comp):
    """A reply starting "Answer:" writes no marker; the backend read the labels at its first
    position with enough mass: the verdict comes from the probabilities. Before: ``parse:``."""
    backend = Scripted([("Answer: the second one", PROBS_B, 0.8, "stop")])
    judge = _judge(backend, label_probs=True, max_tokens=300)
    [j] = asyncio.run(judge.compare([make_comp("x", "y")]))
    assert j.error is None and j.winner == "b"
    assert j.p_a == pytest.approx(0.25)
    assert j.calls[0].note == "verdict_from_probs" and j.calls[0].label_mass == 0.8


@pytest.mark.parametrize(
    ("mass", "label_probs"),
    [(0.3, True), (None, True), (0.8, False)],
    ids=["low-mass", "mass-unknown", "spec-does-not-read-probs"],
)
def test_issue16_6_no_written_verdict_stays_a_parse_error_without_enough_mass(
    make_comp, mass, label_probs
):
    backend = Scripted([("Answer: the second one", PROBS_B, mass, "stop")])
    judge = _judge(backend, label_probs=label_probs, max_tokens=300)
    [j] = asyncio.run(judge.compare([make_comp("x", "y")]))
    assert j.winner is None and j.error_kind == "parse"


def test_issue16_6_probabilities_never_override_a_written_verdict(make_comp):
    backend = Scripted([("Answer: the first.\n[[A]]", PROBS_B, 0.95, "stop")])
    judge = _judge(backend, label_probs=True, max_tokens=300)
    [j] = asyncio.run(judge.compare([make_comp("x", "y")]))
    assert j.winner == "a" and j.p_a is None and j.calls[0].note == "probs_contradict"


def test_issue16_6_a_verdict_from_probs_survives_a_reparse(make_comp):
    backend = Scripted([("Answer: the second one", PROBS_B, 0.8, "stop")])
    judge = _judge(backend, label_probs=True, max_tokens=300)
    [j] = asyncio.run(judge.compare([make_comp("x", "y")]))
    again = judge.reparse(j)
    assert again is None or (again.winner == "b" and again.error is None)
