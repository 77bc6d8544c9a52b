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
