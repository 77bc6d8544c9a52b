"""FSDP2 (``fully_shard``) on two CPU processes over gloo (issue 17 item 5): inside PPO's
full-parameter gather (:func:`judge_rl.train.ppo.gather_full_params`) rank 0 alone samples with
the rollout engine and saves the policy as a full state dict, as the over-optimisation monitor
and the checkpoints do, and nothing waits on a collective the other rank skips."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _launch import free_port  # noqa: E402


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from accelerate.utils import DistributedType
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from judge_rl.models import full_state_dict, tiny_causal_lm, tiny_tokenizer
    from judge_rl.train.ppo import gather_full_params
    from judge_rl.train.rollout import HFRolloutEngine

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        tok = tiny_tokenizer()
        model = tiny_causal_lm(tok, seed=3)
        ids = torch.tensor([[5, 6, 7, 8, 9]])
        mask = torch.ones_like(ids)
        engine = HFRolloutEngine(model, tok, max_new_tokens=6)
        with torch.no_grad():
            want = model(input_ids=ids).logits
        want_ids = engine.generate(ids, mask, greedy=True).response_ids.tolist()
        mesh = init_device_mesh("cpu", (world,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        with torch.no_grad():
            model(input_ids=ids)  # a forward on every rank, as training does first

        class Acc:  # what gather_full_params reads of an accelerate Accelerator
            distributed_type = DistributedType.FSDP

            class state:  # noqa: N801
                deepspeed_plugin = None

        layer0 = model.model.layers[0]  # a layer reshards after its forward (the root does not)
        sharded = type(next(layer0.parameters())).__name__
        try:
            full_state_dict(model)
            outside = "no error"
        except RuntimeError as e:
            outside = str(e)
        got_ids: list[list[int]] = []
        same_logits = True
        with gather_full_params(Acc(), model):
            inside = type(next(layer0.parameters())).__name__
            if rank == 0:  # rank 0 alone samples and saves (the monitor and checkpoints)
                with torch.no_grad():
                    same_logits = bool(torch.allclose(model(input_ids=ids).logits, want))
                got_ids = engine.generate(ids, mask, greedy=True).response_ids.tolist()
                sd = {k: v.detach() for k, v in full_state_dict(model).items()}
                model.save_pretrained(Path(out) / "saved", state_dict=sd)
            dist.barrier()
        after = type(next(layer0.parameters())).__name__
        Path(out, f"rank{rank}.json").write_text(
            json.dumps(
                {
                    "sharded": sharded,
                    "inside": inside,
                    "after": after,
                    "same_logits": same_logits,
                    "same_sample": rank != 0 or got_ids == want_ids,
                    "outside": outside,
                }
            )
        )
    finally:
        dist.destroy_process_group()


def test_fsdp2_rank0_samples_and_saves_full_weights_inside_the_gather(tmp_path):
    mp = pytest.importorskip("torch.multiprocessing")
    from judge_rl.models import tiny_causal_lm, tiny_tokenizer

    ctx = mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=2):
        if time.monotonic() > deadline:  # a rank waiting on a collective the other skipped
            for p in ctx.processes:
                p.kill()
            pytest.fail("a rank hung inside the gather (a collective only one rank entered)")
    for rank in (0, 1):
        r = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert r["sharded"] == "DTensor" and r["inside"] == "Parameter"  # the gather happened
        assert r["after"] == "DTensor"  # and was undone
        assert r["same_logits"] and r["same_sample"]  # the full model, sampled on rank 0 alone
        assert "sharded" in r["outside"]  # outside the gather: an error, never a hang
    from transformers import AutoModelForCausalLM

    back = AutoModelForCausalLM.from_pretrained(str(tmp_path / "saved")).state_dict()
    ref = tiny_causal_lm(tiny_tokenizer(), seed=3).state_dict()
    assert back.keys() == ref.keys()
    assert all(torch.equal(back[k], ref[k]) for k in ref)
