"""Issue 19, tenth round: `judge-rl label` makes each judgment's record, summary share,
preference-file line and run-log JSON as the judgment finishes
(:class:`judge_rl.pipeline.label.LabelBuilder`), and after the last answer only joins them. The
bytes must be the ones the code after the window writes from the finished lists: the records
and summary of :func:`make_labels`, the preference file of ``write_preferences`` (every format)
and ``reports/<run>/log.json`` of ``RunLog.save``.

Here the builder gets random judgments (ties, failures of several kinds, both orders, juries,
cached calls, unicode and escapes, conversational prompts, duplicate comparison ids) in a
shuffled completion order while the comparisons list grows as a stream's does; some judgments
reach the end as other objects (as an ``order: both`` judge's do) or never reach the builder;
each output is compared, byte for byte, with the path that has no builder."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.judge.test_label_outside_bytes import comparisons_and_judgments


def _log(section: Any) -> Any:
    from judge_rl.runlog import RunLog

    log = RunLog(
        run="r",
        command="label",
        created="2026-12-02T00:00:00+00:00",
        config={"x": 1, "label": {"comparisons": []}, "y": '\n "label": {'},
        environment={"python": "3"},
        timings={"label": 1.25},
        cost={"label": 0.5},
        notes=["a note", "é ✓ \u2028"],
    )
    log.label = section
    return log


def _odd_comparisons(rng: random.Random, n: int) -> tuple[list[Any], list[Any]]:
    """Comparisons with text that JSON escapes (quotes, backslashes, newlines, control and
    line-separator characters, emoji), nested metadata, references and a
    duplicate id; judgments with every verdict."""
    from judge_rl.types import Candidate, Comparison, JudgeCall, JudgeFingerprint, Judgment

    fp = JudgeFingerprint(name="judge", kind="pairwise", model="m", params={"t": 0.0})
    texts = ['say "hi"\n', "back\\slash\t", "é 🙂 \u2028 \x00 \x1f", "[]{},:", "\n  ]\n", "ok"]
    comps, judgs = [], []
    for i in range(n):
        ta, tb = rng.choice(texts) + str(i), rng.choice(texts) + f"{i}b"
        a = Candidate(prompt_id=f"o{i}", prompt=ta + "?", response=ta, source="m1")
        b = Candidate(prompt_id=f"o{i}", prompt=ta + "?", response=tb, source="m2 ✓")
        meta: dict[str, Any] = {"nested": {"k": [1, 2.5, None, {"é": "\n"}]}, "line": i}
        if i % 3 == 0:
            meta["category"] = rng.choice(["math", "wri\nting"])
        c = Comparison(
            prompt_id=f"o{i}",
            prompt=ta + "?",
            a=a,
            b=b,
            reference=rng.choice([None, 'ref\n"x"']),
            metadata=meta,
        )
        comps.append(c)
        w = rng.choice(["a", "b", "tie", None])
        err = None if w is not None else "parse: no verdict\nat all"
        call = JudgeCall(first_id=a.id, winner=w, raw=f'{tb}\n[[{w}]] \\ "', error=err, cost=1e-7)
        judgs.append(
            Judgment(
                comparison_id=c.id,
                prompt_id=c.prompt_id,
                a_id=a.id,
                b_id=b.id,
                winner=w,
                p_a=rng.choice([None, 0.25, 0.75, 1.0]),
                judge=fp,
                calls=[call],
                error=err,
            )
        )
    # a later comparison equal to an earlier one (same id): each position gets its judgment
    comps.append(comps[1])
    judgs.append(judgs[1])
    return comps, judgs


def _cases() -> list[tuple[str, list[Any], list[Any]]]:
    comps, judgs = comparisons_and_judgments(180)
    odd_c, odd_j = _odd_comparisons(random.Random(3), 60)
    return [
        ("mixed", comps, judgs),
        ("escapes", odd_c, odd_j),
        ("both", comps[:40] + odd_c, judgs[:40] + odd_j),
        ("one", comps[:1], judgs[:1]),
        ("empty", [], []),
    ]


def _written(records: list[Any], path: Path, **kw: Any) -> bytes | str:
    """The file ``write_preferences`` writes, or its error (mixed prompts in Parquet)."""
    from judge_rl.data import write_preferences
    from judge_rl.errors import DataError

    try:
        return write_preferences(records, path, **kw).read_bytes()
    except DataError as e:
        return str(e)


def _fed(cfg: Any, comps: list[Any], judgs: list[Any], seed: int, *, lines: bool) -> Any:
    """A builder fed as a streamed run feeds it: the comparisons arrive in chunks, and the
    judgments of those read so far in a random order; a few judgments are handed over as a
    copy (the end gets another object), a few never."""
    from judge_rl.pipeline.label import LabelBuilder

    rng = random.Random(seed)
    live: list[Any] = []
    built = LabelBuilder(cfg, live, lines=lines)
    pending: list[int] = []
    at = 0
    while at < len(comps) or pending:
        if at < len(comps) and (not pending or rng.random() < 0.4):
            k = rng.randint(1, 16)
            live.extend(comps[at : at + k])
            pending += range(at, min(at + k, len(comps)))
            at += k
            continue
        i = pending.pop(rng.randrange(len(pending)))
        roll = rng.random()
        if roll < 0.08:
            built.add(judgs[i].model_copy())  # an equal judgment, not the one at the end
        elif roll < 0.12:
            continue  # reported nowhere (a judge whose reports are not its judgments)
        else:
            built.add(judgs[i])
    return built


@pytest.mark.parametrize("drop_ties", [True, False])
@pytest.mark.parametrize("case", range(5))
def test_the_builders_outputs_are_the_bytes_of_the_path_after_the_window(
    tmp_path: Path, case: int, drop_ties: bool
) -> None:
    from judge_rl.pipeline.label import LabelConfig, make_labels

    name, comps, judgs = _cases()[case]
    cfg = LabelConfig(drop_ties=drop_ties)
    want = make_labels(cfg, comps, judgs, 1.25)
    for seed in range(3):
        built = _fed(cfg, comps, judgs, seed, lines=True)
        got = make_labels(cfg, comps, judgs, 1.25, built=built)
        assert got.model_dump_json(indent=1) == want.model_dump_json(indent=1), name
        assert got.section.summary.model_dump_json() == want.section.summary.model_dump_json()
        assert len(comps) < 5 or 0 < built.late < len(comps)  # some made at the end
        assert built.early + built.late >= len(comps)
        items = built.log_items()
        lines = built.lines()
        if 2 * built.late > len(comps):  # most left for the end: the lists made whole
            assert lines is None and (items is None or items[1] is None)
        else:
            assert items is not None
            assert lines is not None and len(lines) == len(got.records)
        for ext in (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".csv", ".parquet"):
            old = _written(want.records, tmp_path / f"old{ext}")
            assert _written(got.records, tmp_path / f"old{ext}", lines=lines) == old, (name, ext)
        old_log = _log(want.section).save(tmp_path / "old")
        new_log = _log(got.section).save(tmp_path / "new", label_items=items)
        assert new_log.read_bytes() == old_log.read_bytes(), name


def test_a_record_the_jsonl_writer_refuses_is_refused_as_before(tmp_path: Path) -> None:
    """A record that cannot be written (a NaN in its provenance): no lines from the builder,
    and ``write_preferences`` raises the error it raised before; the run log (NaN as null) is
    spliced as ever."""
    from judge_rl.data import write_preferences
    from judge_rl.pipeline.label import LabelConfig, make_labels

    comps, judgs = comparisons_and_judgments(30)
    i = next(k for k, j in enumerate(judgs) if j.ok and j.winner != "tie")
    comps[i] = comps[i].model_copy(update={"metadata": {"category": float("nan")}})
    cfg = LabelConfig()
    built = _fed(cfg, comps, judgs, 0, lines=True)
    labels = make_labels(cfg, comps, judgs, 1.0, built=built)
    assert built.lines() is None
    with pytest.raises(ValueError, match="Out of range float"):
        write_preferences(labels.records, tmp_path / "p.jsonl", lines=built.lines())
    with pytest.raises(ValueError, match="Out of range float"):
        write_preferences(labels.records, tmp_path / "p.jsonl")
    want = _log(make_labels(cfg, comps, judgs, 1.0).section).save(tmp_path / "old")
    got = _log(labels.section).save(tmp_path / "new", label_items=built.log_items())
    assert got.read_bytes() == want.read_bytes()


def test_lines_that_do_not_fit_the_records_are_not_used(tmp_path: Path) -> None:
    """``write_preferences`` takes ``lines`` only for a JSONL file whose records it writes
    unchanged: a count that differs, or records given a margin 0 beside others' margins, are
    written from the records."""
    from judge_rl.data import write_preferences
    from judge_rl.pipeline.label import to_records

    comps, judgs = comparisons_and_judgments(30)
    recs = to_records(comps, judgs)
    want = write_preferences(recs, tmp_path / "want.jsonl").read_bytes()
    bogus = [b'{"x": 1}'] * len(recs)
    got = write_preferences(recs, tmp_path / "short.jsonl", lines=bogus[:-1])
    assert got.read_bytes() == want
    margined = [recs[0].model_copy(update={"margin": 2.0}), *recs[1:]]
    want = write_preferences(margined, tmp_path / "m-want.jsonl").read_bytes()
    got = write_preferences(margined, tmp_path / "m.jsonl", lines=bogus)
    assert got.read_bytes() == want and b'"margin": 0.0' in want


def test_label_items_that_do_not_fit_the_section_are_not_used(tmp_path: Path) -> None:
    from judge_rl.pipeline.label import LabelConfig, make_labels

    comps, judgs = comparisons_and_judgments(12)
    section = make_labels(LabelConfig(), comps, judgs, 1.0).section
    want = _log(section).save(tmp_path / "want").read_bytes()
    got = _log(section).save(tmp_path / "got", label_items=([b"1"] * 11, [b"2"] * 12))
    assert got.read_bytes() == want
    log = _log(None)
    assert log.save(tmp_path / "none", label_items=([], [])).read_bytes() == (
        log.save(tmp_path / "none2").read_bytes()
    )
    # one list given, the other serialized with the rest of the log (either way round; and
    # a section with no comparisons or no judgments)
    from judge_rl.pipeline.label import log_item_json

    cj = [log_item_json(c) for c in section.comparisons]
    jj = [log_item_json(j) for j in section.judgments]
    for k, items in enumerate([(cj, None), (None, jj), (cj, jj), (None, None)]):
        got = _log(section).save(tmp_path / f"one{k}", label_items=items)
        assert got.read_bytes() == want, k
    for k, (name, items) in enumerate([("comparisons", ([], jj)), ("judgments", (cj, []))]):
        half = section.model_copy(update={name: []})
        want = _log(half).save(tmp_path / f"h{k}").read_bytes()
        got = _log(half).save(tmp_path / f"hh{k}", label_items=items)
        assert got.read_bytes() == want, name


def test_a_builder_for_another_list_makes_everything_at_the_end() -> None:
    from judge_rl.pipeline.label import LabelConfig, make_labels

    comps, judgs = comparisons_and_judgments(20)
    cfg = LabelConfig(drop_ties=True)
    built = _fed(cfg, comps, judgs, 1, lines=False)
    other = [c.model_copy() for c in comps]  # equal comparisons, other objects
    got = make_labels(cfg, other, judgs, 1.0, built=built)
    assert built.late == len(comps)
    want = make_labels(cfg, comps, judgs, 1.0)
    assert got.model_dump_json() == want.model_dump_json()
    assert built.lines() is None  # not asked for
    with pytest.raises(ValueError):
        make_labels(cfg, comps, judgs[:-1], 1.0, built=_fed(cfg, comps, judgs, 1, lines=False))


def test_text_neither_writer_can_encode_fails_where_it_failed(tmp_path: Path) -> None:
    """A lone surrogate (a file name or text Python decoded with surrogateescape): neither the
    JSONL line nor the run log's JSON can be made; the builder gives neither, and each writer
    raises the error it raised before."""
    from pydantic_core import PydanticSerializationError

    from judge_rl.data import write_preferences
    from judge_rl.pipeline.label import LabelConfig, make_labels

    comps, judgs = comparisons_and_judgments(30)
    i = next(k for k, j in enumerate(judgs) if j.ok and j.winner != "tie")
    a = comps[i].a.model_copy(update={"response": "caf\udce9"})
    comps[i] = comps[i].model_copy(update={"a": a})
    cfg = LabelConfig()
    built = _fed(cfg, comps, judgs, 2, lines=True)
    labels = make_labels(cfg, comps, judgs, 1.0, built=built)
    assert built.lines() is None and built.log_items() is None
    for lines in (None, built.lines()):
        with pytest.raises(UnicodeEncodeError):
            write_preferences(labels.records, tmp_path / "p.jsonl", lines=lines)
    for items in (None, built.log_items()):
        with pytest.raises(PydanticSerializationError):
            _log(labels.section).save(tmp_path / "r", label_items=items)


def test_on_the_event_loop_the_builder_waits_for_a_turn_with_nothing_else_ready() -> None:
    """Judgments reported while the event loop runs are queued and made in turns of the loop
    where nothing else is ready (answers and requests first), IDLE_SLICE at a time."""
    import asyncio

    from judge_rl.pipeline.label import IDLE_SLICE, LabelBuilder, LabelConfig, make_labels

    comps, judgs = comparisons_and_judgments(40)
    cfg = LabelConfig()

    async def run() -> tuple[Any, list[int]]:
        built = LabelBuilder(cfg, comps)
        loop = asyncio.get_running_loop()
        seen: list[int] = []
        busy = [30]

        def other() -> None:  # something else ready at every turn, for 30 turns
            seen.append(built.early)
            busy[0] -= 1
            if busy[0]:
                loop.call_soon(other)

        loop.call_soon(other)
        for j in judgs:
            built.add(j)
        assert built.early == 0  # queued, not made in the reporter's turn
        while busy[0]:
            await asyncio.sleep(0)
        for _ in range(len(judgs)):
            await asyncio.sleep(0.001)  # the loop idles: the builder's turns
        return built, seen

    built, seen = asyncio.run(run())
    assert IDLE_SLICE > 0 and set(seen) == {0}  # nothing made while something else was ready
    assert built.early == len(judgs)
    want = make_labels(cfg, comps, judgs, 1.0)
    assert make_labels(cfg, comps, judgs, 1.0, built=built).model_dump_json() == (
        want.model_dump_json()
    )
    assert built.late == 0


def test_comparisons_are_written_out_for_a_judge_whose_judgments_come_at_the_end(
    tmp_path: Path,
) -> None:
    """An ``order: both`` judge hands back judgments it combines after the last answer: the
    builder takes none of the one-order judgments reported to it, but makes every
    comparison's run-log JSON in idle turns all the same (it needs no judgment); the outputs
    are those of the path without a builder."""
    import asyncio
    import types

    from judge_rl.pipeline.label import LabelBuilder, LabelConfig, make_labels

    comps, judgs = comparisons_and_judgments(60)
    cfg = LabelConfig()
    both = types.SimpleNamespace(fingerprint=judgs[0].judge, order="both")
    one_order = [j.model_copy(update={"order": "fixed"}) for j in judgs]

    async def run() -> Any:
        built = LabelBuilder(cfg, comps, judge=both)
        for j in one_order:
            built.add(j)
            await asyncio.sleep(0.001)
        return built

    built = asyncio.run(run())
    assert built.early == 0 and built.comparisons_made == len(comps)
    got = make_labels(cfg, comps, judgs, 1.0, built=built)
    assert built.late == len(comps)
    assert got.model_dump_json() == make_labels(cfg, comps, judgs, 1.0).model_dump_json()
    items = built.log_items()
    assert items is not None
    want = _log(make_labels(cfg, comps, judgs, 1.0).section).save(tmp_path / "old")
    spliced = _log(got.section).save(tmp_path / "new", label_items=items)
    assert spliced.read_bytes() == want.read_bytes()
