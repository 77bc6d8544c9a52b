"""``judge-rl train-rm`` under DeepSpeed ZeRO-3 on two CPU processes (issue 17 item 5: train-rm goes
through accelerate like PPO, so the DeepSpeed configs the README offers apply to it).

Three steps on a tiny model under ``accelerate launch`` with a ZeRO-3 config (every parameter
sharded), then ``--resume`` from the step-2 checkpoint. Checked: nothing hangs (each launch is
killed, with every process under it, after 240 s); the published model is a full state dict equal
to the weights gathered from the ranks at the end, and plain transformers scores with it as with
those weights; the held-out metrics in the run log cover every held-out pair (each rank scores a
share) and equal plain transformers' scores of the published model; the run takes the same steps
as one process with the same global batch; the step-2 checkpoint holds each rank's optimiser part
(plain data, weights-only loadable), and resuming from it ends where the uninterrupted run ended.

On the code before this test: the launch stopped at ``accelerate.prepare`` (DeepSpeed's micro-batch
left ``auto``), then at the LR schedule (DeepSpeed's ZeRO optimizer is no torch Optimizer), then
at the first checkpoint (``get_state_dict`` needs ``stage3_gather_16bit_weights_on_model_save``;
the ZeRO optimizer's state holds a pickled loss-scaler object and only rank 0's part was saved).

Needs DeepSpeed, which is not a project dependency (see tests/train/test_zero3_cpu.py):

    .venv/bin/python -m pip install --no-deps --no-build-isolation --target /tmp/ds-site \\
        deepspeed hjson msgpack py-cpuinfo einops ninja
    PYTHONPATH=/tmp/ds-site TORCH_EXTENSIONS_DIR=/tmp/z3/ext DS_ACCELERATOR=cpu \\
        .venv/bin/python -m pytest tests/train/test_zero3_rm_cpu.py -m slow
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rm_helpers  # noqa: E402
from _launch import (  # noqa: E402
    accelerate_launch,
    cpu_deepspeed_or_skip,
    launch_env,
    zero3_accelerate_config,
)

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

STEPS = 3
EVAL_SPLIT = 0.25


def _launch(tmp: Path, out: Path, run: Path, *extra: str) -> str:
    """``accelerate launch`` (ZeRO-3 on 2 CPU processes) of ``judge-rl train-rm`` through this
    file's ``__main__`` (the CLI, plus a hook that saves the gathered weights at the end)."""
    cfg = zero3_accelerate_config(
        tmp,
        train_micro_batch_size_per_gpu="auto",  # train-rm fills it (--batch-size)
        gradient_clipping="auto",  # train-rm fills it (max_grad_norm)
    )
    env = launch_env(JUDGE_RL_NO_PROGRESS="1", NO_COLOR="1")
    args = [
        "train-rm", "--data", str(tmp / "pairs.jsonl"), "--model", str(tmp / "bb"),
        "--output", str(out), "--run-name", str(run), "--batch-size", "2", "--grad-accum", "2",
        "--lr", "2e-3",
        "--max-steps", str(STEPS), "--save-every", "2", "--eval-every", "2",
        "--eval-split", str(EVAL_SPLIT), "--threads", "1", "--bf16", "off", *extra,
    ]  # fmt: skip
    return accelerate_launch(
        cfg, __file__, args, env=env, log_path=tmp / f"launch-{run.name}.log",
        hang="train-rm under ZeRO-3 hung", cwd=tmp,
    )  # fmt: skip


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _scores(model, tok, recs, eos: bool) -> list[float]:  # noqa: ANN001
    """Plain transformers, one sequence at a time: the model's output at the last token of
    prompt + response (+ EOS where reward_model.json's input_format says so)."""
    out = []
    with torch.no_grad():
        for r in recs:
            for resp in (r.chosen, r.rejected):
                ids = tok(r.prompt + resp)["input_ids"] + ([tok.eos_token_id] if eos else [])
                out.append(float(model(torch.tensor([ids])).logits[0, 0]))
    return out


def test_train_rm_zero3_two_cpu_processes_full_checkpoint_eval_and_resume(tmp_path):
    cpu_deepspeed_or_skip()
    from transformers import AutoModelForSequenceClassification

    from judge_rl.data import write_preferences
    from judge_rl.runlog import load
    from judge_rl.train._checkpoint import load_trainer_state
    from judge_rl.train.reward_model import (
        STATE_FILE,
        RewardModelConfig,
        RewardModelScorer,
        train_reward_model,
    )
    from judge_rl.train.rm_data import split_eval

    # 48 training pairs: global batches of 4 all full (with 2 processes a batch smaller than 2
    # would be dropped, and the one-process reference below would see other batches)
    recs = rm_helpers.planted_records(64, seed=7)
    write_preferences(recs, tmp_path / "pairs.jsonl")
    rm_helpers.save_tiny_reward_backbone(tmp_path / "bb")
    out = tmp_path / "out"

    # -- 1. three steps under ZeRO-3 ---------------------------------------------------------
    _launch(tmp_path, out, tmp_path / "run-a")
    sec = load(tmp_path / "run-a").reward_model
    assert sec.model_extra["processes"] == 2
    assert sec.model_extra["distributed"] == "DEEPSPEED"
    assert sec.final["steps"] == STEPS
    shard_numel = json.loads((tmp_path / "gathered.json").read_text())
    assert shard_numel["rank0"] == shard_numel["rank1"] == 0  # really sharded during training

    # the published model: a full state dict (every tensor whole), equal to the gathered weights
    saved = _tensors(out / "model.safetensors")
    gathered = _tensors(tmp_path / "gathered.safetensors")
    fresh = dict(rm_helpers.tiny_reward_model()[0].state_dict())
    assert saved.keys() == gathered.keys() and set(fresh) <= set(saved)
    for k in saved:
        assert saved[k].shape == gathered[k].shape and saved[k].numel() > 0, k
        assert torch.equal(saved[k], gathered[k]), k
    assert not all(torch.equal(saved[k], fresh[k]) for k in fresh)  # trained
    # plain transformers scores with it as with the gathered weights
    plain = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    same = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "bb")).eval()
    same.load_state_dict(gathered, strict=False)
    tok = RewardModelScorer(out, device="cpu").tokenizer
    eos = json.loads((out / "reward_model.json").read_text())["input_format"]["append_eos"]
    assert _scores(plain, tok, recs[:6], eos) == _scores(same, tok, recs[:6], eos)

    # -- 2. the held-out metrics cover every held-out pair, scored by both ranks -------------
    ev_idx = split_eval(len(recs), EVAL_SPLIT, 0)[1]
    ev = [recs[i] for i in ev_idx]
    assert sec.n_eval == len(ev) and sec.evals[-1]["n"] == len(ev)
    want = _scores(plain, tok, ev, eos)  # (chosen, rejected) per pair
    got_c, got_r = sec.reward_samples["chosen"], sec.reward_samples["rejected"]
    assert len(got_c) == len(got_r) == len(ev)
    for i in range(len(ev)):
        assert got_c[i] == pytest.approx(want[2 * i], abs=1e-4), i
        assert got_r[i] == pytest.approx(want[2 * i + 1], abs=1e-4), i
    acc = sum(want[2 * i] > want[2 * i + 1] for i in range(len(ev))) / len(ev)
    assert sec.evals[-1]["accuracy"] == pytest.approx(acc)
    margin = sum(want[2 * i] - want[2 * i + 1] for i in range(len(ev))) / len(ev)
    assert sec.evals[-1]["margin"] == pytest.approx(margin, abs=1e-4)

    # -- 3. the same steps as one process with the same global batch: 2 micro-batches of
    # 2 ranks x 2 pairs (under DeepSpeed the engine steps at the step's last micro-batch only)
    one = train_reward_model(
        RewardModelConfig(
            data=str(tmp_path / "pairs.jsonl"),
            model=str(tmp_path / "bb"),
            output=str(tmp_path / "one"),
            batch_size=4,
            grad_accum=2,
            lr=2e-3,
            max_steps=STEPS,
            save_every=0,
            eval_every=2,
            eval_split=EVAL_SPLIT,
            threads=1,
            bf16="off",
        )
    )
    ref = _tensors(tmp_path / "one" / "model.safetensors")
    for k in ref:
        assert torch.allclose(ref[k], saved[k], atol=2e-5), (k, (ref[k] - saved[k]).abs().max())
    assert sec.evals[-1]["margin"] == pytest.approx(one.section.evals[-1]["margin"], abs=1e-4)

    # -- 4. resume from the step-2 checkpoint: each rank's optimiser part, plain data ---------
    ck = out / "checkpoint-2"
    state = load_trainer_state(ck / STATE_FILE)
    assert state["optimizer_shards"] == 2 and state["optimizer"] is None
    for r in (0, 1):
        part = load_trainer_state(ck / f"optimizer-rank{r}.pt")  # weights-only
        assert part["zero"]["optimizer_state_dict"]["state"], r  # AdamW moments of its part
    # as if killed during step 3: the last checkpoint and the published model are gone
    import shutil

    shutil.rmtree(out / f"checkpoint-{STEPS}")
    for f in ("model.safetensors", "reward_model.json"):
        (out / f).unlink()
    _launch(tmp_path, out, tmp_path / "run-b", "--resume")
    sec_b = load(tmp_path / "run-b").reward_model
    assert sec_b.model_extra["resumed_from"].endswith("checkpoint-2")
    resumed = _tensors(out / "model.safetensors")
    for k in saved:
        assert torch.allclose(resumed[k], saved[k], atol=1e-6), k
    assert sec_b.evals[-1]["margin"] == pytest.approx(sec.evals[-1]["margin"], abs=1e-6)


def _main(argv: list[str]) -> int:
    """A rank of the launch above: the ``judge-rl`` CLI, with one extra hook on the trainer that,
    at the end (every rank), gathers the ZeRO-3 parameters and saves them on rank 0."""
    import judge_rl.train.reward_model as rm

    real = rm.train_reward_model
    where = Path(argv[argv.index("--output") + 1]).parent

    def save_gathered(ev) -> None:  # noqa: ANN001
        if ev.kind == "start":
            numel = int(next(ev.model.parameters()).numel())  # a partition: 0 under ZeRO-3
            Path(where, f"numel-rank{os.environ['RANK']}").write_text(str(numel))
        if ev.kind != "end":
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(ev.model.parameters())):
            if os.environ.get("RANK", "0") == "0":
                from safetensors.torch import save_file

                sd = {k: v.detach().clone() for k, v in ev.model.state_dict().items()}
                save_file(sd, str(where / "gathered.safetensors"))
                numel = {f"rank{r}": int(Path(where, f"numel-rank{r}").read_text()) for r in (0, 1)}
                Path(where, "gathered.json").write_text(json.dumps(numel))

    def with_hook(config, **kw):  # noqa: ANN001, ANN202
        kw["hooks"] = [*kw.get("hooks", ()), save_gathered]
        return real(config, **kw)

    rm.train_reward_model = with_hook
    from judge_rl.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
