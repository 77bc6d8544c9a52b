"""JudgmentCache.claim in one batch (issue 19 item 2): the same answers as key by key."""

from __future__ import annotations

import os
import subprocess
import sys

from judge_rl.judge.cache import JudgmentCache


def test_claim_sorts_keys_into_acquired_busy_and_done(tmp_path):
    path = tmp_path / "c.sqlite"
    ours, theirs = JudgmentCache(path), JudgmentCache(path)
    ours.put_many([("done-1", "j", "judgment", '{"v": 1}')])
    # a live other process holds "busy-1" (this test process is alive: same host and pid)
    assert theirs.claim(["busy-1"])[0] == {"busy-1"}
    # a dead process held "dead-1": its claim is taken over
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    db = theirs._db()
    db.execute(
        "INSERT INTO claims(key, owner, host, pid, expires) VALUES (?, ?, ?, ?, ?)",
        ("dead-1", "x:1:ab", theirs.host, int(dead), 1e12),
    )
    db.commit()
    keys = [f"k{i}" for i in range(900)] + ["done-1", "busy-1", "dead-1", "k3"]  # > 400: chunks
    acquired, busy, done = ours.claim(keys)
    assert acquired == {f"k{i}" for i in range(900)} | {"dead-1"}
    assert busy == {"busy-1"} and done == {"done-1": '{"v": 1}'}
    # our own claims are ours again; with refresh a finished key is claimed, not returned
    assert ours.claim(["k1"])[0] == {"k1"}
    ours.refresh = True
    assert ours.claim(["done-1"]) == ({"done-1"}, set(), {})
    n_claims = ours._db().execute("SELECT COUNT(*) FROM claims").fetchone()[0]
    assert n_claims == 900 + 3  # k0..k899, busy-1 (theirs), dead-1 and done-1 (ours)
    assert os.getpid() != int(dead)
