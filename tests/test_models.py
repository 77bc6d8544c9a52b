import pytest
import torch

from judge_rl.models import tiny_causal_lm, tiny_tokenizer
from tests.conftest import requires_embedded


def test_tiny_tokenizer_roundtrip_and_chat_template():
    tok = tiny_tokenizer()
    text = "Héllo, wörld! 12+3=15"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|user|>hi<|end|><|assistant|>"


def test_tiny_model_generates():
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, seed=1)
    enc = tok(["ab", "abcd"], return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (2, enc["input_ids"].shape[1] + 5)


@requires_embedded
def test_embedded_model_generates_text():
    from judge_rl.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer("embedded")
    model = load_causal_lm("embedded")
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert len(text.strip()) > 0


def test_load_policy_checkpoint_reads_full_folders_and_refuses_others(tmp_path):
    """One loader for full and LoRA checkpoints (LoRA: tests/train/test_ppo_lora.py)."""
    import pytest

    from judge_rl.errors import ConfigError
    from judge_rl.models import is_policy_checkpoint, load_policy_checkpoint, save_tiny_model

    path = save_tiny_model(tmp_path / "m", hidden_size=32, num_layers=1)
    assert is_policy_checkpoint(path)
    m = load_policy_checkpoint(path)
    assert not m.training and m.config.hidden_size == 32
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not is_policy_checkpoint(empty)
    with pytest.raises(ConfigError):
        load_policy_checkpoint(empty)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": ""}')
    with pytest.raises(ConfigError, match="base model|peft"):
        load_policy_checkpoint(adapter)


def test_embedded_conversion_runs_in_a_child_and_reports_its_failure(tmp_path, monkeypatch):
    """The GGUF conversion (about 1.6 GB at its peak) runs in a child process, so the caller's
    peak memory never holds it; a failed conversion is one error naming the file, no folder left."""
    import pytest

    from judge_rl import models
    from judge_rl.errors import JudgeRLError

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    monkeypatch.setenv("JUDGE_RL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "embedded_gguf_path", lambda: bad)
    with pytest.raises(JudgeRLError, match="broken.gguf"):
        models.embedded_model_dir()
    assert not (tmp_path / "cache" / f"{models.EMBEDDED_NAME}-{models.EMBEDDED_VERSION}").exists()


class _Tensor:
    """A GGUF reader tensor as ``_dequantize`` sees it: raw ``data``, type and GGUF dims."""

    def __init__(self, name, data, qtype, rows, cols):
        self.name, self.data, self.tensor_type, self.shape = name, data, qtype, [cols, rows]


def test_gguf_dequantize_matches_the_gguf_package_bit_for_bit():
    """The torch dequantiser gives gguf's own numpy dequantiser's float32 values, bit for bit,
    for every type the embedded model uses; other types are left to transformers (None)."""
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize, quantize

    from judge_rl.models import _dequantize

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((48, 96)) * 0.05).astype(np.float32)
    for qtype in (Q.F32, Q.F16, Q.Q4_1, Q.Q8_0):
        data = quantize(x, qtype)
        got = _dequantize(_Tensor("w", data, qtype, 48, 96))
        want = torch.from_numpy(np.array(dequantize(data, qtype)).reshape(48, 96))
        assert got.dtype == torch.float32 and got.shape == (48, 96)
        assert torch.equal(got, want), qtype.name
    assert _dequantize(_Tensor("w", quantize(x, Q.Q4_0), Q.Q4_0, 48, 96)) is None


def test_gguf_llama_weights_undo_the_rotary_permutation_as_transformers_does():
    """q and k come back through transformers' own reverse permutation (peer code, run here), the
    other tensors are renamed only; an unknown tensor name hands the file to transformers."""
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from judge_rl.models import _llama_weights

    class Cfg:
        num_attention_heads, num_key_value_heads = 4, 2

    rng = np.random.default_rng(1)
    q = rng.standard_normal((32, 32)).astype(np.float32)  # 4 heads x 8
    k = rng.standard_normal((16, 32)).astype(np.float32)  # 2 kv heads x 8
    v = rng.standard_normal((16, 32)).astype(np.float32)

    class Reader:
        tensors = [
            _Tensor("blk.0.attn_q.weight", q, Q.F32, 32, 32),
            _Tensor("blk.0.attn_k.weight", k, Q.F32, 16, 32),
            _Tensor("blk.0.attn_v.weight", v, Q.F32, 16, 32),
        ]

    out = _llama_weights(Reader(), Cfg())
    proc = LlamaTensorProcessor(config={"num_attention_heads": 4, "num_key_value_heads": 2})
    q_ref = proc.process(q, "blk.0.attn_q.weight").weights
    k_ref = proc.process(k, "blk.0.attn_k.weight").weights
    assert torch.equal(out["model.layers.0.self_attn.q_proj.weight"], torch.from_numpy(q_ref))
    assert torch.equal(out["model.layers.0.self_attn.k_proj.weight"], torch.from_numpy(k_ref))
    assert torch.equal(out["model.layers.0.self_attn.v_proj.weight"], torch.from_numpy(v))
    Reader.tensors.append(_Tensor("blk.0.ffn_gate_exps.weight", v, Q.F32, 16, 32))
    assert _llama_weights(Reader(), Cfg()) is None


@requires_embedded
@pytest.mark.slow
def test_embedded_conversion_matches_transformers_gguf_loader(tmp_path):
    """Our one-parse conversion writes the weights, config and tokenizer that transformers' own
    GGUF loader gives for the embedded model (the peer's output, computed here)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from judge_rl.models import _convert_gguf, embedded_gguf_path

    gguf = embedded_gguf_path()
    _convert_gguf(str(gguf), str(tmp_path / "ours"))
    ours = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ours"))
    ref = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    a, b = ours.state_dict(), ref.state_dict()
    assert sorted(a) == sorted(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ours.config.to_dict()["tie_word_embeddings"] == ref.config.tie_word_embeddings
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "ours"))
    tok_ref = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    msgs = [{"role": "user", "content": "What is 7 + 5? Reply with only the number. Ünïcödé"}]
    for text in ("2 + 8 = 10\n\nYou", "  spaces\tand\ttabs  ", msgs[0]["content"]):
        assert tok(text)["input_ids"] == tok_ref(text)["input_ids"]
    assert tok.apply_chat_template(msgs, tokenize=False) == tok_ref.apply_chat_template(
        msgs, tokenize=False
    )
    assert (tok.eos_token_id, tok.pad_token_id) == (tok_ref.eos_token_id, tok_ref.pad_token_id)
