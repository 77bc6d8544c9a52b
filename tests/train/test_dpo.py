"""DPO / IPO / soft-label DPO (judge_rl/train/dpo.py, judge_rl/train/_group.py): losses by hand,
a planted preference, soft labels of 0.5, `judge-rl label` output, resume, bad settings."""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path

import pytest
import torch

from judge_rl.models import tiny_causal_lm, tiny_tokenizer
from judge_rl.train._group import dpo_loss
from judge_rl.train.dpo import DPOConfig, DPOTrainer, pair_labels
from judge_rl.types import PreferenceRecord
from tests.conftest import requires_embedded

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py


def t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


@pytest.fixture
def main_cli(capsys, monkeypatch, tmp_path):
    """``judge-rl ARGS`` in this process (a subprocess costs seconds of imports)."""
    from judge_rl.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")

    def _run(*args: str):
        capsys.readouterr()
        rc = main(list(args))
        out = capsys.readouterr()
        return rc, out.out, out.err

    return _run


# ---------------------------------------------------------------------------------------------
# Losses by hand


def test_losses_by_hand():
    # h = (-1 - -2) - (-3 - -2) = 2; beta = 0.5 -> beta*h = 1
    args = (t(-1.0), t(-3.0), t(-2.0), t(-2.0))
    sig, st = dpo_loss(*args, beta=0.5)
    assert sig.item() == pytest.approx(math.log(1 + math.exp(-1)))  # 0.31326
    assert st["reward_chosen"].item() == 0.5 and st["reward_rejected"].item() == -0.5
    assert st["margin"].item() == 1.0
    # soft label p = 0.8: 0.8 * log(1 + e^-1) + 0.2 * log(1 + e^1)
    soft, _ = dpo_loss(*args, beta=0.5, loss="soft", p_chosen=t(0.8))
    assert soft.item() == pytest.approx(0.8 * 0.3132617 + 0.2 * 1.3132617, rel=1e-6)
    # IPO: (h - (p - 1/2) / beta)^2 -> hard label (2 - 1)^2 = 1, a tie (2 - 0)^2 = 4
    ipo, _ = dpo_loss(*args, beta=0.5, loss="ipo")
    assert ipo.item() == pytest.approx(1.0)
    ipo_tie, _ = dpo_loss(*args, beta=0.5, loss="ipo", p_chosen=t(0.5))
    assert ipo_tie.item() == pytest.approx(4.0)
    # a soft label of 1 is plain DPO
    one, _ = dpo_loss(*args, beta=0.5, loss="soft", p_chosen=t(1.0))
    assert one.item() == pytest.approx(sig.item())


def test_soft_label_one_half_has_zero_gradient_at_the_reference():
    # d/dh [-p log σ(βh) - (1-p) log σ(-βh)] = β (σ(βh) - p): 0 at h = 0 when p = 1/2
    pc = torch.tensor([-4.0, -7.0], requires_grad=True)
    pr = torch.tensor([-5.0, -2.0], requires_grad=True)
    losses, _ = dpo_loss(pc, pr, pc.detach(), pr.detach(), beta=0.3, loss="soft",
                         p_chosen=torch.tensor([0.5, 0.5]))  # fmt: skip
    losses.sum().backward()
    assert pc.grad is not None and pr.grad is not None
    assert torch.equal(pc.grad, torch.zeros(2)) and torch.equal(pr.grad, torch.zeros(2))
    hard, _ = dpo_loss(pc, pr, pc.detach(), pr.detach(), beta=0.3)
    (g,) = torch.autograd.grad(hard.sum(), pc)
    assert torch.allclose(g, torch.tensor([-0.15, -0.15]))  # -β (1 - σ(0)) = -0.15


def test_pair_labels_and_ties():
    recs = [
        PreferenceRecord(prompt="p", chosen="a", rejected="b", p_chosen=1.0),
        PreferenceRecord(prompt="p", chosen="a", rejected="b", p_chosen=0.5),
        PreferenceRecord(prompt="p", chosen="a", rejected="b", p_chosen=0.7),
    ]
    assert pair_labels(recs, "sigmoid", "drop") == ([0, 2], [1.0, 1.0], 1)
    assert pair_labels(recs, "sigmoid", "half") == ([0, 1, 2], [1.0, 0.5, 1.0], 0)
    assert pair_labels(recs, "soft", "half") == ([0, 1, 2], [1.0, 0.5, 0.7], 0)


# ---------------------------------------------------------------------------------------------
# Training on a tiny model


def planted(n: int = 160, seed: int = 0) -> list[PreferenceRecord]:
    """Chosen responses contain the marker word 'zebra'; rejected ones never do."""
    rng = random.Random(seed)
    words = ["the", "a", "cat", "dog", "sun", "tree", "red", "blue", "sky", "old", "new", "big"]

    def sent() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(3, 6)))

    out = []
    for i in range(n):
        base = sent()
        if rng.random() < 0.5:
            c, r = base + " zebra", base + " " + rng.choice(words)
        else:
            c, r = "zebra " + sent(), sent()
        out.append(PreferenceRecord(prompt=f"q{i}: {sent()}", chosen=c, rejected=r))
    return out


def tiny(seed: int = 0):
    tok = tiny_tokenizer()
    return tiny_causal_lm(tok, hidden_size=32, num_layers=1, seed=seed), tok


def cfg(**kw) -> DPOConfig:
    base = dict(beta=0.1, lr=3e-3, epochs=3, batch_size=16, eval_fraction=0.25, device="cpu",
                max_length=64, max_prompt_length=32)  # fmt: skip
    base.update(kw)
    return DPOConfig(**base)


@pytest.mark.parametrize("loss", ["sigmoid", "ipo"])
def test_planted_preference_is_learnt(loss):
    model, tok = tiny()
    tr = DPOTrainer(cfg(loss=loss, lr=3e-3 if loss == "sigmoid" else 1e-3), model, tok, planted())
    before = tr.evaluate()
    assert before["reward_accuracy"] < 0.6  # nothing learnt yet (margins ~0)
    assert abs(before["margin"]) < 1e-4  # the policy is the reference
    section = tr.train()
    ev = tr.summary["final_eval"]
    assert ev["pairs"] == 40 and tr.summary["n_train"] == 120
    assert ev["reward_accuracy"] >= 0.95, ev
    assert ev["margin"] > 0.2 and ev["reward_chosen"] > ev["reward_rejected"]
    assert section.steps[-1]["loss"] < section.steps[0]["loss"]
    for k in ("loss", "reward_accuracy", "margin", "reward_chosen", "reward_rejected",
              "pairs_per_s", "grad_norm"):  # fmt: skip
        assert all(math.isfinite(s[k]) for s in section.steps), k


def test_shared_prompt_forward_gives_the_plain_forward_results():
    runs = {}
    for shared in (True, False):
        model, tok = tiny()
        tr = DPOTrainer(cfg(shared_prompt=shared, max_steps=5), model, tok, planted(60))
        section = tr.train()
        assert tr._shared is shared
        runs[shared] = (section.steps, tr.reference_logps())
    (a, ref_a), (b, ref_b) = runs[True], runs[False]
    assert torch.allclose(ref_a, ref_b, atol=1e-3)  # summed log-probs of ~40 tokens
    assert torch.equal(ref_a[:, 2:], ref_b[:, 2:])  # the same token counts
    for x, y in zip(a, b, strict=True):
        for k in ("loss", "margin", "reward_chosen", "logp_chosen"):
            assert x[k] == pytest.approx(y[k], rel=1e-3, abs=1e-4), k


def test_plain_forward_pads_to_the_longest_row_and_matches_each_row_alone():
    """The plain (not shared-prompt) batch is as wide as its longest prompt + response, as TRL
    pads, not the longest prompt plus the longest response; each row's summed log-probability
    equals that row's own unpadded forward."""
    model, tok = tiny()
    pairs = planted(40)
    # prompts and responses of different lengths, so that the two widths differ
    pairs[0] = PreferenceRecord(prompt="q: " + "the " * 20, chosen="zebra", rejected="a cat")
    pairs[1] = PreferenceRecord(prompt="q", chosen="the " * 12 + "zebra", rejected="sun")
    tr = DPOTrainer(cfg(shared_prompt=False, max_steps=1), model, tok, pairs)
    rows = [0, 1, 2, 3]
    ids, am, pos, r_ids, r_mask = tr._batch_tensors(rows)
    p = [len(tr.pairs.prompt[i]) for i in rows] * 2
    r = [len(tr.pairs.chosen[i]) for i in rows] + [len(tr.pairs.rejected[i]) for i in rows]
    assert ids.shape[1] == max(a + b for a, b in zip(p, r, strict=True)) < max(p) + max(r)
    assert int(am.sum()) == sum(p) + sum(r) and r_mask.sum(1).tolist() == r
    with torch.no_grad():
        got, n = tr._plain_logps(rows)
        for k, i in enumerate(rows * 2):
            resp = tr.pairs.chosen[i] if k < len(rows) else tr.pairs.rejected[i]
            x = torch.tensor([tr.pairs.prompt[i] + resp])
            lp = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), -1)
            tgt = x[0, 1:]
            want = lp.gather(1, tgt[:, None])[-len(resp) :].sum()
            assert float(got[k]) == pytest.approx(float(want), abs=1e-4), k
            assert int(n[k]) == len(resp)


def test_length_normalised_variant_trains():
    model, tok = tiny()
    tr = DPOTrainer(cfg(length_normalize=True, beta=1.0, lr=3e-3), model, tok, planted())
    tr.train()
    assert tr.summary["final_eval"]["reward_accuracy"] >= 0.9


def test_soft_labels_of_one_half_give_no_gradient_on_the_first_step():
    recs = [r.model_copy(update={"p_chosen": 0.5}) for r in planted(16)]
    norms = {}
    for name, records, kw in (
        ("half", recs, dict(loss="soft", ties="half")),
        ("hard", planted(16), dict(loss="sigmoid")),
    ):
        model, tok = tiny()
        tr = DPOTrainer(cfg(max_steps=1, eval_fraction=0.0, **kw), model, tok, records)
        norms[name] = tr.train().steps[0]["grad_norm"]
    assert norms["half"] < 1e-6 < 1e-2 < norms["hard"], norms


def test_reference_logps_are_cached_and_resume_reproduces_statistics(tmp_path):
    kw = dict(epochs=2, output=str(tmp_path / "o"), save_every=10, batch_size=8)
    model, tok = tiny()
    straight = DPOTrainer(cfg(**kw), model, tok, planted(80))
    s1 = straight.train()
    assert (tmp_path / "o" / "ref_logps.pt").exists()
    ckpt = tmp_path / "o" / "checkpoint-000010"
    assert (ckpt / "trainer_state.pt").exists() and (ckpt / "config.json").exists()
    assert [c["step"] for c in s1.checkpoints] == [10, 16]

    model, tok = tiny()
    resumed = DPOTrainer(cfg(resume=str(ckpt), **kw), model, tok, planted(80))
    assert resumed.step == 10
    assert torch.equal(resumed.reference_logps(), straight.reference_logps())  # from the cache
    s2 = resumed.train()
    assert [int(s["step"]) for s in s2.steps] == list(range(1, 17))
    for a, b in zip(s1.steps, s2.steps, strict=True):
        for k in ("loss", "margin", "reward_chosen", "reward_rejected", "reward_accuracy"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), (a["step"], k)
    assert straight.summary["final_eval"]["loss"] == pytest.approx(
        resumed.summary["final_eval"]["loss"], rel=1e-5
    )


def _label_output(tmp_path: Path) -> Path:
    """A real `judge-rl label` run with the mock judge (prefers the longer response)."""
    from judge_rl.cli import main

    rows = [
        {"prompt": f"Question {i}?", "response_a": "short", "response_b": "a longer answer " * (
            1 + i % 3), "winner": "b"}
        for i in range(10)
    ]  # fmt: skip
    rows.append({"prompt": "Say hi", "response_a": "hi", "response_b": "yo", "winner": "tie"})
    inp = tmp_path / "pairs.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "labels.jsonl"
    rc = main(["label", "--judge", "mock-pairwise", "--input", str(inp), "--output", str(out), "--no-drop-ties",
               "--cache", str(tmp_path / "c.sqlite"), "--run", str(tmp_path / "label-run")])  # fmt: skip
    assert rc == 0
    return out


def test_dpo_on_label_output_with_ties_dropped_or_kept(tmp_path):
    out = _label_output(tmp_path)
    for ties, pairs in (("drop", 10), ("half", 11)):
        model, tok = tiny()
        tr = DPOTrainer(cfg(data=str(out), loss="soft", ties=ties, eval_fraction=0.0), model, tok)
        assert len(tr.pairs) == pairs and tr.summary["ties_dropped"] == 11 - pairs
        assert tr.train().steps


def test_checkpoint_is_a_model_folder_and_the_run_log_lists_it(tmp_path):
    from judge_rl.models import load_causal_lm
    from judge_rl.runlog import load, new_log

    log = new_log("dpo", "d")
    model, tok = tiny()
    c = cfg(output=str(tmp_path / "o"), max_steps=2, eval_fraction=0.1)
    DPOTrainer(c, model, tok, planted(20), run_log=log, run_dir=tmp_path / "run").train()
    run = load(tmp_path / "run")
    assert run.ppo is not None and run.ppo.checkpoints
    path = run.ppo.checkpoints[-1]["path"]
    assert load_causal_lm(path) is not None  # what tournaments and `judge-rl overopt` load
    assert run.extra["dpo"]["final_eval"]["pairs"] == 2


def test_cli_bad_settings_and_empty_files_exit_2(main_cli, tmp_path, tiny_model_dir):
    ties = tmp_path / "ties.jsonl"
    ties.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "p_chosen": 0.5}))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    base = ["dpo", "--policy", str(tiny_model_dir), "--output", str(tmp_path / "o")]
    for flags, message in (
        (["--data", str(ties)], "no preference pairs to train on (1 ties dropped"),
        (["--data", str(empty)], "no preference pairs to train on"),
        (["--data", str(good), "--beta", "-1"], "beta: must be positive"),
        (["--data", str(good), "--loss", "kto"], "loss: must be one of sigmoid, ipo, soft"),
        (["--data", str(tmp_path / "missing.jsonl")], "missing.jsonl"),
    ):
        rc, _, err = main_cli(*base, *flags)
        assert rc == 2, (flags, err)
        assert message in " ".join(err.split()) and "Traceback" not in err, err


# ---------------------------------------------------------------------------------------------
# The embedded model


@requires_embedded
@pytest.mark.slow
def test_embedded_model_dpo_steps_on_label_output(embedded, tmp_path):
    model, tok = embedded
    policy = copy.deepcopy(model)
    out = _label_output(tmp_path)
    c = DPOConfig(data=str(out), loss="soft", ties="half", max_steps=3, batch_size=4, lr=1e-6,
                  eval_fraction=0.0, device="cpu", output=str(tmp_path / "o"))  # fmt: skip
    tr = DPOTrainer(c, policy, tok)
    section = tr.train()
    assert len(section.steps) == 3
    assert all(math.isfinite(s["loss"]) and math.isfinite(s["margin"]) for s in section.steps)
    assert section.steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)  # h = 0 at start
    assert (tmp_path / "o" / "ref_logps.pt").exists()


def test_lora_dpo_learns_the_planted_preference():
    pytest.importorskip("peft")
    model, tok = tiny()
    tr = DPOTrainer(cfg(lora_r=8, lr=1e-2), model, tok, planted())
    assert tr._peft and tr._check_shared()  # the shared-prompt forward (test_dpo_lora_shared)
    tr.train()
    assert tr.summary["final_eval"]["reward_accuracy"] >= 0.9, tr.summary["final_eval"]


def test_judge_rl_overopt_analyses_a_dpo_run(main_cli, tmp_path, tiny_model_dir):
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r.to_trl()) + "\n" for r in planted(24)))
    rc, out, err = main_cli("dpo", "--policy", str(tiny_model_dir), "--data", str(data),
                            "--output", str(tmp_path / "o"), "--max-steps", "2", "--save-every",
                            "1", "--no-chat-template", "--max-new-tokens", "8", "--device", "cpu",
                            "--run", "d")  # fmt: skip
    assert rc == 0, err
    assert "held out (2 pairs)" in " ".join(out.split())
    prompts = tmp_path / "held.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"h{i}"}) + "\n" for i in range(3)))
    rc, out, err = main_cli("overopt", str(tmp_path / "reports" / "d"), "--gold", "contains:b",
                            "--proxy", "contains:a", "--prompts", str(prompts), "--device",
                            "cpu")  # fmt: skip
    assert rc == 0, err
    from judge_rl.runlog import load

    sec = load(tmp_path / "reports" / "overopt-d").overopt
    assert sec is not None and [int(p["step"]) for p in sec.points] == [0, 1, 2]
