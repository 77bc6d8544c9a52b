"""The monitor callback driven by a scripted policy handle (fast; the PPO-driven planted hack is in
test_planted_hack.py)."""

from __future__ import annotations

import random

from judge_rl.overopt import planted
from judge_rl.overopt.monitor import MonitorConfig, OveroptMonitor
from judge_rl.runlog import OveroptSection, RunLog
from judge_rl.train.callbacks import Samples, StepInfo


class ScriptedHandle:
    """A PolicyHandle whose samples at each step come from a script: step -> (mix, kl) where
    ``mix`` is a list of (response, weight)."""

    def __init__(self, script, reference_mix, seed=0):
        self.script = script
        self.reference_mix = reference_mix
        self.step = 0
        self.saved: list[str] = []
        self.rng = random.Random(seed)

    def _current(self):
        keys = [k for k in self.script if k <= self.step]
        return self.script[max(keys)]

    def sample(self, prompts, *, greedy=False, max_new_tokens=None, reference=False):
        mix, kl = (self.reference_mix, 0.0) if reference else self._current()
        texts = [r for r, _ in mix]
        weights = [w for _, w in mix]
        out = Samples(prompts=list(prompts), responses=[])
        for _ in prompts:
            r = self.rng.choices(texts, weights)[0]
            out.responses.append(r)
            out.ended_with_eos.append(len(r) < 16)
            out.kl.append(kl + self.rng.gauss(0, 0.3))
            out.ref_logprob.append(-1.0 if len(r) < 16 else -1.5)
        return out

    def save_checkpoint(self, tag=None):
        path = f"/ckpt/{tag}"
        self.saved.append(path)
        return path


REF = [("ok", 0.3), ("no", 0.3), ("yes", 0.2), ("sure", 0.2)]
SCRIPT = {
    0: (REF, 0.0),
    2: ([("ok", 0.9), ("no", 0.1)], 1.5),
    4: ([("ok", 0.95), ("okok", 0.05)], 2.5),
    6: ([("okokokokokokokok", 0.6), ("ok", 0.4)], 12.0),
    8: ([("okokokokokokokok", 1.0)], 20.0),
}


def _train(monitor, handle, steps):
    """What the trainer does with a callback."""
    monitor.on_train_start(handle)
    for step in range(1, steps + 1):
        handle.step = step
        info = StepInfo(step=step, prompts=[], responses=[], rewards=[], stats={})
        if monitor.on_step(info, handle):
            break
    monitor.on_train_end(handle)


def _monitor(**kw):
    cfg = MonitorConfig(every=2, **kw)
    prompts = planted.prompts(64, seed=1)
    return OveroptMonitor(planted.TargetCount(), planted.ShortWithTarget(), prompts, cfg)


def test_monitor_alarms_with_evidence_and_stops():
    mon = _monitor(stop_on_alarm=True, probe=True)
    handle = ScriptedHandle(SCRIPT, REF)
    _train(mon, handle, 12)
    sec = OveroptSection.model_validate(mon.log_section()["overopt"])
    steps = [p["step"] for p in sec.points]
    assert steps == [0, 2, 4, 6]  # stopped at the alarm (step 6), no evaluation after it
    assert mon.stopped and len(sec.alarms) == 1
    alarm = sec.alarms[0]
    assert alarm["step"] == 6 and alarm["kind"] == "overoptimisation"
    ev = alarm["evidence"]
    assert ev["step"] == 6 and ev["metrics"]["gold_mean"] < ev["test"]["gold_peak"]
    assert ev["test"]["proxy_rising"] and ev["test"]["gold_drop_significant"]
    assert alarm["examples"][0].startswith("okokok")
    assert {"repeat_ngram", "length", "missing_eos"} <= set(ev["degeneration_flags"])
    # best checkpoint by gold, not by proxy (the proxy is highest at the alarm)
    assert sec.best_checkpoint["step"] in (2, 4)
    assert sec.best_checkpoint["path"] == f"/ckpt/monitor-step-{sec.best_checkpoint['step']}"
    assert handle.saved == [f"/ckpt/monitor-step-{s}" for s in steps]
    # probes ran before training (step 0) and at each later evaluation
    assert {r["step"] for r in sec.probes} == {0, 2, 4, 6}
    # the section fits into a run log
    RunLog(run="x", command="ppo", overopt=sec)


def test_monitor_without_stop_keeps_going_and_fits():
    mon = _monitor()
    _train(mon, ScriptedHandle(SCRIPT, REF), 11)
    steps = [p["step"] for p in mon.section.points]
    assert steps == [0, 2, 4, 6, 8, 10, 11]  # the last step is evaluated at the end
    assert len(mon.section.alarms) == 1  # one alarm, not one per evaluation
    fit = mon.section.fit
    assert fit["beta"] > 0 and fit["kl_peak"] is not None and fit["kl_peak"] < 12


def test_monitor_quiet_when_nothing_is_gamed():
    calm = {0: (REF, 0.0), 2: ([("ok", 0.8), ("no", 0.2)], 1.0), 4: ([("ok", 1.0)], 2.0)}
    mon = _monitor(stop_on_alarm=True)
    _train(mon, ScriptedHandle(calm, REF), 10)
    assert mon.section.alarms == [] and not mon.stopped
    assert mon.section.best_checkpoint["step"] >= 4
    late = mon.section.degeneration[-1]
    assert "repeat_ngram" not in late["flags"] and "missing_eos" not in late["flags"]


def test_state_dict_resume_reproduces_an_uninterrupted_run():
    """Kill after step 5, restore the monitor's state into a fresh monitor (through JSON, as a
    checkpoint stores it), train on: the points, alarm and best checkpoint equal the
    uninterrupted run's. Without the state the resumed monitor would start a new curve."""
    import json

    full = _monitor()
    h1 = ScriptedHandle(SCRIPT, REF, seed=7)
    _train(full, h1, 11)

    first = _monitor()
    h2 = ScriptedHandle(SCRIPT, REF, seed=7)
    first.on_train_start(h2)
    for step in range(1, 6):
        h2.step = step
        first.on_step(StepInfo(step=step, prompts=[], responses=[], rewards=[], stats={}), h2)
    state = json.loads(json.dumps(first.state_dict()))

    resumed = _monitor()
    resumed.load_state_dict(state)
    resumed.on_train_start(h2)  # the reference is re-measured; no new step-5 point
    for step in range(6, 12):
        h2.step = step
        resumed.on_step(StepInfo(step=step, prompts=[], responses=[], rewards=[], stats={}), h2)
    resumed.on_train_end(h2)
    a, b = full.section, resumed.section
    assert [p["step"] for p in b.points] == [p["step"] for p in a.points]
    assert [p["step"] for p in b.points[:3]] == [0, 2, 4]

    def strip(points):  # wall-clock time differs between runs
        return [{k: v for k, v in p.items() if k != "time_s"} for p in points]

    assert strip(b.points[:3]) == strip(a.points[:3])
    assert [x["step"] for x in b.alarms] == [x["step"] for x in a.alarms]
    assert b.best_checkpoint["step"] == a.best_checkpoint["step"]


def test_points_carry_per_prompt_scores_for_the_paired_test():
    mon = _monitor()
    _train(mon, ScriptedHandle(SCRIPT, REF), 4)
    p = mon.section.points[-1]
    assert len(p["gold_by_prompt"]) == len(mon.items) == len(p["proxy_by_prompt"])
    assert mon.horizon is None or mon.horizon >= len(mon.section.points)


class StreamHandle(ScriptedHandle):
    """Records each draw; texts-only draws carry no KL (as the PPO trainer's ``score=False``)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls: list[tuple[int, bool, int]] = []

    def sample(
        self, prompts, *, greedy=False, max_new_tokens=None, reference=False, score=True, stream=0
    ):
        self.calls.append((len(prompts), score, stream))
        out = super().sample(prompts, greedy=greedy, reference=reference)
        if not score:
            out.kl, out.ref_logprob = [], []
        return out


def test_scored_samples_take_kl_from_a_subset_and_gold_from_every_sample():
    """samples_per_prompt 3, scored_samples 1: one scored draw (1 per prompt) and one texts-only
    draw on another stream (2 per prompt); gold and proxy see all 3 per prompt, in prompt order."""
    mon = _monitor(samples_per_prompt=3, scored_samples=1)
    handle = StreamHandle(SCRIPT, REF)
    _train(mon, handle, 4)
    n = len(mon.items)
    assert handle.calls[:2] == [(n, True, 0), (2 * n, False, 1)]
    sec = OveroptSection.model_validate(mon.log_section()["overopt"])
    p = sec.points[-1]
    assert p["gold_n"] == 3 * n and len(p["gold_by_prompt"]) == n
    assert p["kl"] is not None and p["kl"] > 0  # from the scored third only (nan rows skipped)
    assert all(row["n"] == 3 * n for row in sec.degeneration)
    # all samples scored when asked (the default): one draw per evaluation
    plain = StreamHandle(SCRIPT, REF)
    _train(_monitor(samples_per_prompt=3), plain, 4)
    assert all(c == (3 * n, True, 0) for c in plain.calls)
