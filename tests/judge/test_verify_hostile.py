"""Hostile answers through every verifier mode: nothing runs, every call is bounded.

Each string goes in as a plain response, inside ``\\boxed{}``, and as the reference (a file the
user did not write). Every call must return a verdict or an explicit error (a timeout, a
DataError for a reference that is not an answer) within a bounded time, marker files must never
be created, and the workers' audit hooks must never have had to refuse anything (nothing even
tried to compile or run text).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from judge_rl.errors import DataError
from judge_rl.judge.math_pool import get_pool
from judge_rl.judge.verify import MODES, CheckError, check

MB = 1_000_000
CALL_LIMIT_S = 30.0  # generous: the machine running the suite may be heavily loaded


def hostile(marker: Path) -> list[str]:
    m = str(marker)
    return [
        f"__import__('os').system('touch {m}')",
        f'__import__("os").system("touch {m}")',
        f"lambda: __import__('os').system('touch {m}')",
        f"(lambda: open('{m}', 'w'))()",
        f"exec(\"open('{m}','w').write('x')\")",
        f"eval(\"__import__('os').system('touch {m}')\")",
        "().__class__.__bases__[0].__subclasses__()",
        "__builtins__.__dict__['__import__']('os')",
        "getattr(__import__('os'), 'system')('id')",
        "Symbol('x').__class__.__init__.__globals__",
        f'S(\'__import__("os").system("touch {m}")\')',
        "(lambda f: f(f))(lambda f: f(f))",
        "9**9**9",
        "9^9^9",
        "9^{9^{9}}",
        "2**2**2**2**2**2",
        "10^{10^{10}}",
        "x^{10000000000}",
        "(2^{20})!",
        f"\\input{{{m}}}",
        f"\\immediate\\write18{{touch {m}}}",
        "\\def\\x{\\x}\\x",
        "{" * 10_000 + "1" + "}" * 10_000,
        "(" * 5_000 + "1" + ")" * 5_000,
        "\\frac{" * 200 + "1" + "}{2}" * 200,
        "\\sqrt{" * 300 + "2" + "}" * 300,
        "1" * MB,
        "9" * MB + "!",
        "x+" * (MB // 2) + "1",
        "a" * MB,
        "\\boxed{" * 50_000 + "1" + "}" * 50_000,
        "#### " + "1," * (MB // 2),
        "The answer is " + "= " * (MB // 2) + "7",
        "$" * MB,
        "\x00\x01\x02 import os",
    ]


def _call(text: str, ref: str, mode: str) -> str:
    t = time.perf_counter()
    try:
        c = check(text, ref, mode, timeout_s=0.5)
        outcome = "error" if c.error else "verdict"
        if c.error:
            assert c.error.split(":")[0] in ("timeout", "verifier"), c.error
            assert c.correct is None
        else:
            assert isinstance(c.correct, bool)
    except DataError:
        outcome = "data-error"
    elapsed = time.perf_counter() - t
    assert elapsed < CALL_LIMIT_S, (mode, text[:60], elapsed)
    return outcome


@pytest.mark.parametrize("mode", MODES)
def test_hostile_strings_in_every_mode(tmp_path, mode):
    marker = tmp_path / "PWNED"
    pool = get_pool()
    blocked_before = pool.stats.blocked
    ref = "B" if mode == "choice" else "18"
    outcomes = []
    for s in hostile(marker):
        for text in (s, f"\\boxed{{{s}}}", f"The answer is {s}"):
            outcomes.append(_call(text, ref, mode))
        outcomes.append(_call("#### 18", s, mode))  # hostile reference
    assert not marker.exists()
    assert pool.stats.blocked == blocked_before
    assert set(outcomes) <= {"verdict", "error", "data-error"}


def test_hostile_answers_are_never_correct(tmp_path):
    # a payload is not the answer 0 (the old verifier's eval returned 0 for os.system)
    marker = tmp_path / "PWNED"
    for s in hostile(marker)[:12]:
        for mode in ("auto", "boxed", "symbolic"):
            c = check(f"\\boxed{{{s}}}", "0", mode, timeout_s=0.5)
            assert c.correct is not True, (mode, s)
    assert not marker.exists()


def test_timeout_is_an_error_not_false():
    c = check(r"\boxed{(2^{20})!}", "1", "boxed", timeout_s=0.2)
    assert c.correct is None and c.error is not None and c.error.startswith("timeout")
    with pytest.raises(CheckError) as e:
        from judge_rl.judge.verify import verify

        verify(r"\boxed{(2^{20})!}", "1", "boxed", timeout_s=0.2)
    assert e.value.kind == "timeout"
    # the pool still answers afterwards
    assert check(r"\boxed{\frac 34}", "0.75", "boxed").correct is True


def test_a_worker_that_ignores_its_timer_is_killed_and_replaced(monkeypatch):
    import judge_rl.judge.math_pool as mp

    pool = get_pool()
    pool.warm()
    restarts = pool.stats.restarts
    # The worker's CPU timer allows 1000 s; the parent's wall-clock deadline (here 0.5 s) is what
    # ends the check, as it would for C code that never returns to the interpreter.
    monkeypatch.setattr(mp, "WALL_FACTOR", 0.0)
    monkeypatch.setattr(mp, "GRACE_S", 0.5)
    r = pool.check("1", r"(2^{22})!", 1000.0)
    assert r.status == "timeout"
    assert pool.stats.restarts == restarts + 1
    monkeypatch.undo()
    assert pool.check("1", "1", 5.0).status == "ok"


def test_workers_run_under_a_memory_limit():
    import judge_rl.judge.math_pool as mp

    pool = get_pool()
    pool.warm()
    limits = Path(f"/proc/{pool._all[0].proc.pid}/limits")
    if not limits.exists():
        pytest.skip("no /proc on this system")
    line = next(x for x in limits.read_text().splitlines() if x.startswith("Max address space"))
    assert str(mp.DEFAULT_MEMORY_MB * 1024 * 1024) in line


@pytest.mark.slow
def test_memory_limit_is_enforced():
    import judge_rl.judge.math_pool as mp

    pool = mp.MathPool(size=1, memory_mb=400)
    try:
        # a 10^8-digit power needs far more than 400 MB: a memory error, or a timeout
        r = pool.check("1", r"7^{99999999} + 1", 20.0)
        assert r.status in ("error", "timeout"), r
        assert pool.check("1", "1", 5.0).status == "ok"
    finally:
        pool.close()


def test_a_timeout_is_a_judgment_error_of_kind_timeout():
    from judge_rl.judge.base import compare_sync, score_sync
    from judge_rl.judge.verify import VerifierJudge
    from judge_rl.types import Candidate, Comparison

    judge = VerifierJudge(mode="boxed", timeout_s=0.2)
    slow = Candidate(
        prompt_id="p",
        prompt="?",
        response=r"\boxed{(2^{20})!}",
        source="m1",
        metadata={"reference": "1"},
    )
    good = Candidate(
        prompt_id="p", prompt="?", response=r"\boxed{1}", source="m2", metadata={"reference": "1"}
    )
    s = score_sync(judge, [slow, good])
    assert s[0].score is None and s[0].error.startswith("timeout")
    assert s[1].score == 1.0
    j = compare_sync(judge, [Comparison(prompt_id="p", prompt="?", a=good, b=slow, reference="1")])
    assert j[0].winner is None and j[0].error_kind == "timeout"
