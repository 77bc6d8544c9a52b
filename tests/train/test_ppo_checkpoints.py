"""PPO checkpoints and logs (issue 17 item 6): the over-optimisation monitor's state resumes
exactly, retention keeps what it promises, the run log is appended per step as events and
compacted at the end, a kill during a save leaves nothing to resume from by mistake."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from judge_rl.models import tiny_causal_lm, tiny_tokenizer
from judge_rl.overopt.monitor import MonitorConfig, OveroptMonitor
from judge_rl.runlog import RunLog
from judge_rl.train.ppo import OPTIM_FILE, STATE_FILE, PPOConfig, PPOTrainer
from judge_rl.train.reward_sources import make_reward_source

PROMPTS = [f"q{i}" for i in range(8)]
HELD_OUT = [f"h{i}" for i in range(6)]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py


def cfg(**kw):
    base = dict(
        steps=4,
        batch_size=8,
        mini_batch_size=8,
        ppo_epochs=1,
        lr=3e-3,
        max_new_tokens=6,
        device="cpu",
        seed=0,
        value_model="head",
    )
    base.update(kw)
    return PPOConfig(**base)


def monitor():
    return OveroptMonitor(
        make_reward_source("contains:a"),
        make_reward_source("contains:b"),
        HELD_OUT,
        MonitorConfig(every=1, min_fit_points=99),
    )


class Kill(Exception):
    pass


class KillAt:
    """Stands for kill -9 right after step ``k``'s checkpoint."""

    def __init__(self, k):
        self.k = k

    def on_train_start(self, handle):
        pass

    def on_step(self, info, handle):
        if info.step == self.k + 1:
            raise Kill

    def on_train_end(self, handle):
        pass

    def log_section(self):
        return {}


def run(out, callbacks, run_dir=None, **kw):
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1)
    log = RunLog(run="t", command="ppo")
    trainer = PPOTrainer(
        cfg(output=str(out), **kw),
        model,
        tok,
        "contains:a",
        PROMPTS,
        callbacks=callbacks,
        run_log=log,
        run_dir=run_dir,
    )
    return trainer, log


def points(section):
    return [
        {k: v for k, v in p.items() if k not in ("checkpoint", "time_s")} for p in section.points
    ]


def test_resume_with_monitor_gives_the_uninterrupted_runs_points(tmp_path):
    mon_a = monitor()
    straight, log_a = run(tmp_path / "a", [mon_a], save_every=2)
    straight.train()

    mon_b = monitor()
    killed, _ = run(tmp_path / "b", [mon_b, KillAt(2)], save_every=2)
    with pytest.raises(Kill):
        killed.train()
    mon_c = monitor()  # a fresh process: new monitor, state from the checkpoint
    resumed, log_c = run(tmp_path / "b", [mon_c, KillAt(99)], save_every=2, resume="latest")
    assert resumed.step == 2
    resumed.train()
    assert [p["step"] for p in mon_c.section.points] == [0, 1, 2, 3, 4]
    assert points(mon_c.section) == points(mon_a.section)
    assert points(log_c.overopt) == points(log_a.overopt)  # the run log's section too


def test_retention_keeps_newest_best_and_latest_optimizer(tmp_path):
    out = tmp_path / "out"
    best = {"path": str(out / "checkpoint-000001")}
    fake = SimpleNamespace(
        section=SimpleNamespace(best_checkpoint=best),
        on_train_start=lambda h: None,
        on_step=lambda i, h: None,
        on_train_end=lambda h: None,
        log_section=lambda: {},
    )
    trainer, _ = run(out, [fake], steps=5, save_every=1, keep_checkpoints=2)
    trainer.train()
    left = sorted(p.name for p in out.glob("checkpoint-*"))
    assert left == ["checkpoint-000001", "checkpoint-000004", "checkpoint-000005"]
    assert [p.parent.name for p in out.glob(f"checkpoint-*/{OPTIM_FILE}")] == ["checkpoint-000005"]
    assert all((out / n / STATE_FILE).exists() for n in left)
    assert {c["path"] for c in trainer.section.checkpoints} <= {str(out / n) for n in left}
    # an older resume point still resumes (fresh optimiser moments, a warning)
    again, _ = run(out, [], steps=5, resume=str(out / "checkpoint-000004"))
    assert again.step == 4


def test_monitor_checkpoints_are_pruned_but_best_is_kept(tmp_path):
    out = tmp_path / "out"
    mon = monitor()
    trainer, _ = run(out, [mon], steps=4, keep_checkpoints=1)
    trainer.train()
    names = {p.name for p in out.glob("checkpoint-*")}
    best = mon.section.best_checkpoint.get("path")
    assert best and best.split("/")[-1] in names
    assert "checkpoint-000004" in names  # the final resume point
    assert len(names) <= 3


def test_run_log_events_per_step_compacted_at_the_end(tmp_path):
    run_dir = tmp_path / "run"
    trainer, log = run(tmp_path / "out", [KillAt(2)], run_dir=run_dir, log_samples=1)
    with pytest.raises(Kill):
        trainer.train()
    ev = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in ev] == [1, 2, 3]  # appended as each step ended
    assert ev[0]["stats"]["step"] == 1.0 and len(ev[0]["samples"]) == 1
    trainer2, log2 = run(tmp_path / "out2", [], run_dir=tmp_path / "run2")
    trainer2.train()
    assert not (tmp_path / "run2" / "events.jsonl").exists()  # compacted into log.json
    saved = json.loads((tmp_path / "run2" / "log.json").read_text())
    assert len(saved["ppo"]["steps"]) == 4


def test_temp_folders_from_a_killed_save_are_removed_on_resume(tmp_path):
    out = tmp_path / "out"
    trainer, _ = run(out, [], steps=2, save_every=1)
    trainer.train()
    junk = out / "checkpoint-000003.tmp"
    junk.mkdir()
    (junk / STATE_FILE).write_bytes(b"partial")
    again, _ = run(out, [], steps=3, resume="latest")
    assert again.step == 2 and not junk.exists()
