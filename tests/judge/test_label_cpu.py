"""Issue 19 item 2, fifth round: the label command's per-judgment CPU, same outputs.

Each change writes what the code before it wrote (the golden outputs of ``judge-rl label`` are
held by ``test_label_throughput.py``); the tests here pin the pieces that golden run does not
reach (batches over a statement's size, duplicate keys, refresh, odd answer bodies, judgments
read back from the cache) and fail on the code before the change where they pin a cost.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import threading
import time

import pytest

from judge_rl.judge import CachedJudge, JudgmentCache, LLMJudge, OrderedJudge
from judge_rl.judge import cache as cache_mod
from judge_rl.judge.parse import ParseError, _last_line, locate_pairwise
from judge_rl.types import Candidate, Comparison, JudgeFingerprint, Judgment


def _row_by_row_store(db: sqlite3.Connection, owner: str, items, release, refresh=False):
    """The store before this round: ``executemany``, one row per execution (the reference)."""
    now = 1.0
    db.execute("BEGIN IMMEDIATE")
    verb = "INSERT OR REPLACE" if refresh else "INSERT OR IGNORE"
    before = db.total_changes
    db.executemany(
        f"{verb} INTO judgments(key, judge, kind, value, created, gen) VALUES (?, ?, ?, ?, ?, ?)",
        [(it[0], it[1], it[2], it[3], now, it[4] if len(it) > 4 else None) for it in items],
    )
    writes = db.total_changes - before
    drop = [(k, owner) for k in [*(it[0] for it in items), *release]]
    db.executemany("DELETE FROM claims WHERE key = ? AND owner = ?", drop)
    db.execute("COMMIT")
    return writes


def _rows(path):
    db = sqlite3.connect(path)
    try:
        return (
            db.execute(
                "SELECT key, judge, kind, value, gen FROM judgments ORDER BY key"
            ).fetchall(),
            db.execute("SELECT key, owner FROM claims ORDER BY key").fetchall(),
        )
    finally:
        db.close()


@pytest.mark.parametrize("refresh", [False, True])
def test_multi_row_statements_store_what_row_by_row_stored(tmp_path, refresh):
    # 300 rows (over ROWS_PER_STATEMENT), a key twice in one batch (first wins without
    # refresh, last with it), a row without a generation key, claims to drop and to release
    items = [(f"k{i:04d}", "fp", "judgment", json.dumps({"v": i}), f"g{i}") for i in range(300)]
    items.insert(7, ("k0003", "fp", "judgment", '{"v": "again"}', "g3b"))
    items.append(("k9999", "fp", "judgment", "{}"))
    release = [f"r{i:04d}" for i in range(1000)]  # over KEYS_PER_STATEMENT
    new = JudgmentCache(tmp_path / "new.sqlite", refresh=refresh)
    ref = JudgmentCache(tmp_path / "ref.sqlite", refresh=refresh)
    for c in (new, ref):
        acquired, busy, done = c.claim([it[0] for it in items] + release)
        assert len(acquired) == 1301 and not busy and not done
    ref_db = ref._db()
    ref_db.execute("UPDATE claims SET owner = ?", (new.owner,))  # same owner on both sides
    ref.owner = new.owner
    assert _rows(tmp_path / "new.sqlite")[1] == _rows(tmp_path / "ref.sqlite")[1]
    statements: list[str] = []
    new._db().set_trace_callback(statements.append)
    new.store(items, release)
    writes = _row_by_row_store(ref_db, ref.owner, items, release, refresh=refresh)
    new.close()
    ref.close()
    assert new.writes == writes
    got, want = _rows(tmp_path / "new.sqlite"), _rows(tmp_path / "ref.sqlite")
    assert got == want
    assert got[1] == []  # every claim dropped or released
    # one INSERT per 128 rows and one DELETE per 900 keys (row by row: 302 + 1302)
    inserts = [s for s in statements if "INTO judgments" in s]
    deletes = [s for s in statements if s.startswith("DELETE FROM claims")]
    assert len(inserts) == 3 and len(deletes) == 2, (len(inserts), len(deletes))


def test_claims_in_multi_row_statements_match_row_by_row(tmp_path):
    c = JudgmentCache(tmp_path / "c.sqlite")
    keys = [f"k{i:04d}" for i in range(700)]
    c.put_many([("k0005", "fp", "judgment", "{}")])  # finished: answered, not claimed
    statements: list[str] = []
    c._db().set_trace_callback(statements.append)
    acquired, busy, done = c.claim(keys + keys[:10])  # repeats count once
    assert acquired == set(keys) - {"k0005"} and not busy and done == {"k0005": "{}"}
    claimed = _rows(tmp_path / "c.sqlite")[1]
    assert [k for k, _ in claimed] == sorted(set(keys) - {"k0005"})
    assert {o for _, o in claimed} == {c.owner}
    # claims go 400 keys at a time (399 + 300 here), one INSERT per 128 of them: 4 + 3
    assert len([s for s in statements if s.startswith("INSERT OR REPLACE INTO claims")]) == 7
    c.release(keys)
    assert _rows(tmp_path / "c.sqlite")[1] == []
    c.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority: Linux")
def test_the_store_thread_runs_below_the_event_loop(tmp_path, pairwise_template, monkeypatch):
    from judge_rl.backends.mock import MockBackend

    seen: list[tuple[int, int]] = []
    store = JudgmentCache.store

    def spy(self, items, release):
        tid = threading.get_native_id()
        seen.append((tid, os.getpriority(os.PRIO_PROCESS, tid)))
        return store(self, items, release)

    monkeypatch.setattr(JudgmentCache, "store", spy)
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    judge = CachedJudge(LLMJudge(MockBackend(), pairwise_template), JudgmentCache(tmp_path / "c"))
    comps = [_comparison(i) for i in range(40)]
    out = asyncio.run(judge.compare(comps))
    assert all(j.ok for j in out)
    assert seen and all(tid != threading.get_native_id() for tid, _ in seen)
    expected = min(19, loop_nice + cache_mod.STORE_NICE)
    assert {nice for _, nice in seen} == {expected}
    # the thread of the caller (the event loop's) keeps its priority
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_nice


def _comparison(i: int) -> Comparison:
    p = f"question-{i}"
    a = Candidate(prompt_id=p, prompt=p, response=f"first {i}", source="m1")
    b = Candidate(prompt_id=p, prompt=p, response=f"second {i}", source="m2")
    return Comparison(prompt_id=p, prompt=p, a=a, b=b)


def _old_last_line(text: str) -> tuple[int, str]:
    """``_last_line`` before this round (the reference)."""
    ls = [(no, ln.strip()) for no, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    return ls[-1] if ls else (0, "")


LINE_PARTS = ["", " ", "\t", "[[A]]", "[[B]]", "Verdict: B", "a", "**[[C]]**", "```", "> [[A]]"]
SEPARATORS = ["\n", "\r\n", "\r", "\x0b", "\x1c", "\u2028", "\n\n"]


def test_last_line_is_the_one_it_was():
    import itertools
    import random

    rnd = random.Random(0)
    texts = ["", "\n", " \n\t\n", "x", "x\n", "\n\nx\n\n"]
    for _ in range(3000):
        parts = [rnd.choice(LINE_PARTS) for _ in range(rnd.randint(1, 6))]
        seps = [rnd.choice(SEPARATORS) for _ in parts]
        texts.append("".join(itertools.chain.from_iterable(zip(parts, seps, strict=True))))
    for t in texts:
        assert _last_line(t) == _old_last_line(t), repr(t)


PARSED_BEFORE = {
    # reply -> what locate_pairwise gave before this round (recorded from commit 3d6830c)
    "Comparing the two answers carefully.\n[[A]]": ("A", 39),
    "**Verdict: [[B]]**": ("B", 13),
    "Final verdict: [[A]]\nNote: B wrote [[A]] at its end.": ("A", 17),
    "[[A]]\n\n[[B]]": "conflicting verdicts: [[A]] (line 1), [[B]] (line 3)",
    "Verdict: [[X]]\nVerdict: A": "marker soup: [[X]], [[A]] (line 1 is not a verdict A, B or C)",
    "My answer: [[C]]\nThe winner is B": "conflicting verdicts: [[C]] (line 1), [[B]] (line 2)",
    "I compared them.\n[Response B]": "template echo: the reply ends with the header [Response B]",
    "reasoning\r\nB": ("B", 11),
    "```\n[[A]]\n```\nwinner: b": ("B", 22),
    '{"winner": "A"}': ("A", None),
    "Answer: [[A]]\nFinal answer: A": ("A", 28),
    "> [[B]]\nVerdict: A": ("A", 17),
}


@pytest.mark.parametrize("text", sorted(PARSED_BEFORE))
def test_the_verdict_parser_answers_as_it_did(text):
    """Verdicts, slots and errors of replies that take every path of the marker matching
    (a marker line is matched once now; the label rule reuses it)."""
    try:
        got: object = locate_pairwise(text)
    except ParseError as e:
        got = str(e)
    assert got == PARSED_BEFORE[text]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"choices": [{"message": {"content": "[[A]]"}, "finish_reason": "stop"}]}',
        '{"choices": [{"message": {"content": "é [[B]]"}}]}'.encode(),
        b'{"choices": [{"message": {"content": "\\ud800"}}], "usage": {"prompt_tokens": 3}}',
        b'{"choices": []} trailing',
        b'{"choices": [{"message": {"content": "\xff"}}]}',  # not UTF-8
        '\ufeff{"choices": [{"message": {"content": "bom"}}]}'.encode(),
        '{"choices": [{"message": {"content": "utf16"}}]}'.encode("utf-16-le"),
        b'  {"choices": [{"message": {"content": "space"}}]}',
        b"[1, 2]",
        b"",
    ],
)
def test_answer_bodies_parse_as_json_loads_reads_them(raw):
    """The answer body's JSON: the UTF-8 path for a body starting with ``{`` gives what
    ``json.loads`` gives (or the same failure), every other body still goes to ``json.loads``."""
    from judge_rl.backends.base import ChatRequest
    from judge_rl.backends.openai import OpenAIBackend, _Attempts

    backend = OpenAIBackend("m", base_urls="http://127.0.0.1:9/v1")
    got = backend._parse(raw, ChatRequest(messages=[]), _Attempts(), time.perf_counter())
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        assert got.error is not None and got.error.startswith("malformed: response is not JSON")
        return
    if not isinstance(data, dict):
        assert got.error == "malformed: response is not a JSON object"
    elif not data.get("choices"):
        assert got.error is not None
    else:
        assert got.error is None
        assert got.texts == [c["message"]["content"] for c in data["choices"]]
        assert got.prompt_tokens == (data.get("usage") or {}).get("prompt_tokens", 0)


def test_a_fixed_order_judgment_is_not_copied_at_the_end(pairwise_template):
    from judge_rl.backends.mock import MockBackend

    inner = LLMJudge(MockBackend(), pairwise_template)
    made: list[Judgment] = []
    compare = inner.compare

    async def keep(comps):
        out = await compare(comps)
        made.extend(out)
        return out

    inner.compare = keep  # type: ignore[method-assign]
    judge = OrderedJudge(inner, "fixed")
    comps = [_comparison(i) for i in range(5)]
    out = asyncio.run(judge.compare(comps))
    assert [j.order for j in out] == ["fixed"] * 5
    assert all(a is b for a, b in zip(out, made, strict=True))  # the judge's own records
    # another order still gets its copy, with the order set
    random_out = asyncio.run(
        OrderedJudge(LLMJudge(MockBackend(), pairwise_template), "random").compare(comps)
    )
    assert [j.order for j in random_out] == ["random"] * 5


def test_records_of_cached_judgments_hash_each_fingerprint_once(monkeypatch):
    """Judgments read back from the cache each carry an equal copy of the fingerprint: the
    records name the same judge key, hashed once (it was hashed for every judgment)."""
    from judge_rl.pipeline.label import to_records

    fp = JudgeFingerprint(name="j", kind="pairwise", model="m", params={"temperature": 0.0})
    other = JudgeFingerprint(name="j", kind="pairwise", model="m", params={"temperature": 0})
    comps = [_comparison(i) for i in range(6)]
    judgments = []
    for i, c in enumerate(comps):
        j = Judgment(
            comparison_id=c.id,
            prompt_id=c.prompt_id,
            a_id=c.a.id,
            b_id=c.b.id,
            winner="a",
            judge=fp if i < 4 else other,
        )
        judgments.append(Judgment.model_validate_json(j.model_dump_json()))  # own copies
    hashed: list[str] = []
    key = JudgeFingerprint.key

    def counting(self):
        hashed.append(self.name)
        return key.fget(self)

    monkeypatch.setattr(JudgeFingerprint, "key", property(counting))
    records = to_records(comps, judgments)
    monkeypatch.undo()
    assert [r.provenance["judge_key"] for r in records] == [fp.key] * 4 + [other.key] * 2
    assert fp.key != other.key  # 0.0 and 0 are different JSON: different judges
    assert len(hashed) == 2


@pytest.mark.parametrize("drop_ties", [True, False])
def test_records_with_ties_dropped_are_the_ones_filtered_before(drop_ties):
    """make_labels counts ties without building them when they are dropped: the records and
    the summary's counts are what building every record and filtering gave (a tie is any
    record at p_chosen 0.5: a C verdict, or a verdict whose probability is 0.5)."""
    from judge_rl.pipeline.label import LabelConfig, make_labels, to_records

    fp = JudgeFingerprint(name="j", kind="pairwise")
    comps = [_comparison(i) for i in range(7)]
    verdicts = [("a", None), ("b", 0.2), ("tie", None), ("a", 0.5), ("b", 0.5), (None, None)]
    verdicts.append(("a", 0.9))
    judgments = [
        Judgment(
            comparison_id=c.id,
            prompt_id=c.prompt_id,
            a_id=c.a.id,
            b_id=c.b.id,
            winner=w,
            p_a=p,
            judge=fp,
            error=None if w else "parse: no verdict",
        )
        for c, (w, p) in zip(comps, verdicts, strict=True)
    ]
    every = to_records(comps, judgments)
    assert len(every) == 6 and sum(r.is_tie for r in every) == 3
    labels = make_labels(LabelConfig(drop_ties=drop_ties), comps, judgments, 1.0)
    want = [r for r in every if not r.is_tie] if drop_ties else every
    assert [r.model_dump() for r in labels.records] == [r.model_dump() for r in want]
    s = labels.section.summary
    assert (s.written, s.decided, s.ties_dropped) == (len(want), 3, 3 if drop_ties else 0)
