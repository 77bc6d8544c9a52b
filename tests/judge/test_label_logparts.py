"""The run log's comparisons and judgments written out while a run is judged
(:class:`judge_rl.runlog.LogParts`): the file is the bytes ``model_dump_json(indent=1)`` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from judge_rl.runlog import LabelSection, LogParts, RunLog, new_log
from judge_rl.types import Candidate, Comparison, JudgeCall, JudgeFingerprint, Judgment

TRICKY = [
    "plain",
    'line\nbreak\n },\n {\n  "x": 1',
    'quote " and \\" and \\\\" : {}',
    "é ü 日本 \U0001f600 \u2028",
    '\n  "comparisons": [],\n  "judgments": [],\n',
]


def _log(n: int = 12) -> RunLog:
    fp = JudgeFingerprint(name="j", version="1", kind="pairwise", params={"t": 0.5})
    comps, judgments = [], []
    for i in range(n):
        t = TRICKY[i % len(TRICKY)]
        a = Candidate(prompt_id=str(i), prompt=f"q {t}", response=f"a {t}", source="m1")
        b = Candidate(prompt_id=str(i), prompt=f"q {t}", response=f"b {i}", source="m2")
        c = Comparison(prompt_id=str(i), prompt=f"q {t}", a=a, b=b, metadata={"line": i})
        comps.append(c)
        calls = [
            JudgeCall(first_id=a.id, winner="a", p_a=0.1 * (i % 10), raw=t, latency_s=1e-5 * i),
            JudgeCall(
                first_id=b.id,
                raw=t,
                error="parse: no verdict",
                attempts=2,
                retries=1,
                attempt_latency_s=[0.25, 1.5e-7],
            ),
        ][: 1 + i % 2]
        err = i % 4 == 3
        judgments.append(
            Judgment(
                comparison_id=c.id,
                prompt_id=c.prompt_id,
                a_id=a.id,
                b_id=b.id,
                winner=None if err else "a",
                error="server: 500" if err else None,
                judge=fp,
                order="both" if i % 2 else "fixed",
                calls=calls,
                consistent=None if err else bool(i % 3),
                cost=0.001 * i,
            )
        )
    log = new_log("label", "r", config={"judge": "x", "overrides": {"k": [1, 2.5, None]}})
    log.add_judge(fp)
    log.label = LabelSection(comparisons=comps, judgments=judgments, output="o.jsonl")
    log.timings["label"] = 1.25
    return log


def test_parts_give_the_bytes_of_the_whole_dump():
    log = _log(37)
    want = log.model_dump_json(indent=1)
    assert LogParts().dump(log) is None  # nothing added: the whole dump (save falls back)
    parts = LogParts()
    sec = log.label
    assert sec is not None
    for i in range(0, 37, 5):  # as a run adds them: in chunks, judgments in another order
        parts.add(sec.comparisons[i : i + 5])
        parts.add(list(reversed(sec.judgments[i : i + 5])))
    assert len(parts) == 74
    assert parts.dump(log) == want
    parts.add(sec.judgments)  # added twice: written once
    assert len(parts) == 74 and parts.dump(log) == want


def test_an_item_replaced_after_it_was_added_is_written_afresh():
    log = _log(6)
    sec = log.label
    assert sec is not None
    parts = LogParts()
    parts.add(sec.comparisons)
    parts.add(sec.judgments)
    sec.judgments[2] = sec.judgments[2].model_copy(update={"order": "both", "cost": 9.5})
    sec.judgments.append(sec.judgments[0])  # the same judgment twice (a repeated comparison)
    assert parts.dump(log) == log.model_dump_json(indent=1)


def test_no_splice_where_the_marks_are_not_unique(tmp_path: Path):
    log = _log(3)
    log.config = {"comparisons": [], "judgments": [], "z": 1}  # the same lines, 1 level up
    parts = LogParts()
    assert parts.dump(log) is None
    path = log.save(tmp_path, parts=parts)
    assert path.read_text(encoding="utf-8") == log.model_dump_json(indent=1)
    empty = new_log("label", "r")
    empty.label = LabelSection()
    assert LogParts().dump(empty) is None
    assert LogParts().dump(new_log("label", "r")) is None


def test_the_command_writes_its_log_from_parts_made_while_judging(tmp_path, monkeypatch, capsys):
    """``judge-rl label``: the run log holds the bytes of the whole dump, and every comparison
    and judgment in it was written out before the judging window closed."""
    import judge_rl.commands.label as cmd

    monkeypatch.setattr(cmd, "BUILD_IN_WINDOW", True)
    import judge_rl.runlog as runlog
    from tests.judge.test_label_throughput import run_label

    seen: dict[str, object] = {}
    save = runlog.RunLog.save

    def spy(self: RunLog, run_dir, parts=None):  # type: ignore[no-untyped-def]
        sec = self.label
        assert sec is not None and parts is not None
        items = {id(x) for x in sec.comparisons} | {id(x) for x in sec.judgments}
        seen["made"] = sum(1 for k in parts._text if k in items)
        seen["items"] = len(items)
        seen["want"] = self.model_dump_json(indent=1)
        return save(self, run_dir, parts=parts)

    monkeypatch.setattr(runlog.RunLog, "save", spy)
    run_label(tmp_path)
    capsys.readouterr()
    assert seen["items"] and seen["made"] == seen["items"]
    assert (tmp_path / "run" / "log.json").read_text(encoding="utf-8") == seen["want"]


# --- preference records made while judging ------------------------------------------------------


def _judged(n: int = 40) -> tuple[list[Comparison], list[Judgment]]:
    log = _log(n)
    sec = log.label
    assert sec is not None
    comps, judgments = list(sec.comparisons), []
    for i, j in enumerate(sec.judgments):  # ties, p_a None, b wins, categories, failures
        upd: dict[str, object] = {}
        if i % 5 == 1:
            upd = {"winner": "tie", "p_a": None}
        elif i % 5 == 2 and j.error is None:
            upd = {"winner": "b", "p_a": 0.2 if i % 2 else None}
        elif i % 5 == 4 and j.error is None:
            upd = {"p_a": 0.5}  # a decided verdict at p 0.5: counted as a tie
        judgments.append(j.model_copy(update=upd))
    for i in range(0, n, 7):
        comps[i] = comps[i].model_copy(update={"metadata": {"category": f"cat {i}"}})
    comps.append(comps[3])  # a repeated comparison, judged once
    judgments.append(judgments[3])
    return comps, judgments


@pytest.mark.parametrize("drop_ties", [True, False])
def test_records_made_while_judging_are_the_records_made_after(drop_ties: bool):
    from judge_rl.pipeline.label import RecordParts, _records

    comps, judgments = _judged()
    want = _records(comps, judgments, drop_ties=drop_ties)
    made = RecordParts(drop_ties=drop_ties)
    made.add(judgments[:10])  # before their comparisons came: not made
    assert not made.pairs
    for i in range(0, len(comps), 8):
        made.add_comparisons(comps[i : i + 8])
        made.add(list(reversed(judgments[i : i + 8])))
    assert len(made.pairs) == len({id(j) for j in judgments})
    got = _records(comps, judgments, drop_ties=drop_ties, made=made)
    assert [r.model_dump() for r in got[0]] == [r.model_dump() for r in want[0]]
    assert got[1] == want[1] and want[1] > 0
    # the records are the ones made while judging (not made again)
    made_recs = {id(p[3]) for p in made.pairs.values() if p[3] is not None}
    assert all(id(r) in made_recs for r in got[0])
    # a judgment replaced at the end, or a drop_ties that differs: made afresh
    judgments[5] = judgments[5].model_copy(update={"winner": "a", "p_a": 0.9, "error": None})
    again = _records(comps, judgments, drop_ties=drop_ties, made=made)
    assert [r.model_dump() for r in again[0]] == [
        r.model_dump() for r in _records(comps, judgments, drop_ties=drop_ties)[0]
    ]
    other = _records(comps, judgments, drop_ties=not drop_ties, made=made)
    assert [r.model_dump() for r in other[0]] == [
        r.model_dump() for r in _records(comps, judgments, drop_ties=not drop_ties)[0]
    ]


@pytest.mark.parametrize("name", ["p.jsonl", "p.jsonl.gz", "p.ndjson", "p.json", "p.csv"])
def test_preference_lines_made_before_write_the_same_bytes(tmp_path: Path, name: str):
    from judge_rl.data import write_preferences
    from judge_rl.pipeline.label import RecordParts, _records

    comps, judgments = _judged()
    made = RecordParts(drop_ties=False)
    made.add_comparisons(comps)
    made.add(judgments)
    recs = _records(comps, judgments, drop_ties=False, made=made)[0]
    recs.append(recs[0].model_copy(update={"prompt": 'not made before: 日本 " \\'}))
    assert made.lines is not None and len(made.lines) == len(recs) - 1
    want = write_preferences(recs, tmp_path / "want" / name).read_bytes()
    got = write_preferences(recs, tmp_path / "got" / name, lines=made.lines).read_bytes()
    assert got == want
    empty = write_preferences([], tmp_path / "empty" / name, lines=made.lines).read_bytes()
    assert empty == write_preferences([], tmp_path / "empty2" / name).read_bytes()


def test_the_command_makes_its_records_while_judging(tmp_path, monkeypatch, capsys):
    import judge_rl.commands.label as cmd

    monkeypatch.setattr(cmd, "BUILD_IN_WINDOW", True)
    import judge_rl.pipeline.label as PL
    from tests.judge.test_label_throughput import run_label

    seen: dict[str, int] = {}
    records = PL._records

    def spy(comparisons, judgments, *, drop_ties=False, made=None):  # type: ignore[no-untyped-def]
        assert made is not None
        seen["n"] = len(judgments)
        seen["repeats"] = len(comparisons) - len({c.id for c in comparisons})
        seen["made"] = sum(
            1
            for c, j in zip(comparisons, judgments, strict=True)
            if id(j) in made.pairs and made.pairs[id(j)][0] is c
        )
        return records(comparisons, judgments, drop_ties=drop_ties, made=made)

    monkeypatch.setattr(PL, "_records", spy)
    run_label(tmp_path)
    capsys.readouterr()
    # all but a repeated comparison's later copies (another object: made after the window)
    assert seen["n"] and seen["made"] == seen["n"] - seen["repeats"]


# --- start-up ---------------------------------------------------------------------------------

FIRST_REQUEST = r"""
import sys
import judge_rl.backends.openai as O
one = O.OpenAIBackend._one
seen = []
async def first(self, req):
    if not seen:
        seen.append(sorted(m for m in ("judge_rl.runlog", "judge_rl.pipeline.label") if m in sys.modules))
    return await one(self, req)
O.OpenAIBackend._one = first
from judge_rl.cli import main
rc = main(sys.argv[1:])
print("FIRST", *seen[0], "END", "judge_rl.runlog" in sys.modules, rc)
"""


def test_the_run_log_models_are_imported_after_the_first_request(tmp_path: Path):
    """``judge_rl.runlog`` (~0.1 s of model building) is not imported before the first
    request goes out; the run log is written all the same."""
    import json
    import os
    import subprocess
    import sys

    from judge_rl.backends._fakeserver import start_in_thread
    from tests.judge.test_label_throughput import _pairs, _spec

    inp = tmp_path / "pairs.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in _pairs()), encoding="utf-8")
    with start_in_thread() as srv:
        spec = _spec(tmp_path, srv.url)
        args = ["label", "--judge", str(spec), "--input", str(inp), "--output"]
        args += [str(tmp_path / "p.jsonl"), "--run", str(tmp_path / "run"), "--cache"]
        args += [str(tmp_path / "c.sqlite"), "--no-drop-ties"]
        env = dict(os.environ, JUDGE_RL_NO_PROGRESS="1", HF_HUB_OFFLINE="1")
        r = subprocess.run(
            [sys.executable, "-c", FIRST_REQUEST, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    line = [x for x in r.stdout.splitlines() if x.startswith("FIRST")]
    assert line, r.stderr[-2000:]
    assert line[0].split() == ["FIRST", "judge_rl.pipeline.label", "END", "True", "0"]
    log = json.loads((tmp_path / "run" / "log.json").read_text(encoding="utf-8"))
    assert len(log["label"]["judgments"]) == len(_pairs())


def test_labels_read_back_without_the_run_log_imported_first():
    """``Labels`` (whose section's model is imported lazily) completes itself when built or
    read back in a fresh interpreter (a resumed pipeline reads a finished label stage)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from judge_rl.pipeline.label import Labels\n"
        "assert 'judge_rl.runlog' not in sys.modules\n"
        "a = Labels.model_validate({'records': []})\n"
        "b = Labels.model_validate_json(a.model_dump_json())\n"
        "print(type(b.section).__name__, Labels().section.summary.n)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["LabelSection", "0"], r.stderr[-2000:]
