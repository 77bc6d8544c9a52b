"""TRL itself trains on the files write_preferences writes (slow; needs the TRL peer venv that
``benchmarks/_peer.py`` creates under .bench-venvs/trl, skipped when it is absent)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from judge_rl.data import read_preferences, write_preferences

ROOT = Path(__file__).resolve().parents[2]
TRL_PY = ROOT / ".bench-venvs" / "trl" / "bin" / "python"

SCRIPT = '"""Load judge_rl-written preference files with datasets and train TRL\'s RewardTrainer and\nDPOTrainer one step on each (tiny random model, byte-level tokenizer). Prints OK lines."""\nimport sys, json, warnings\nwarnings.filterwarnings("ignore")\nfrom datasets import load_dataset\nfrom tokenizers import Tokenizer, models, pre_tokenizers, decoders\nfrom transformers import PreTrainedTokenizerFast, LlamaConfig, LlamaForSequenceClassification, LlamaForCausalLM\nfrom trl import RewardConfig, RewardTrainer, DPOConfig, DPOTrainer\nfrom trl.data_utils import is_conversational\n\ndef tokenizer():\n    vocab = {chr(i) if 32 <= i < 127 else f"<0x{i:02X}>": i for i in range(256)}\n    vocab.update({"<pad>": 256, "<eos>": 257, "<unk>": 258})\n    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))\n    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")\n    t = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")\n    t.chat_template = "{% for m in messages %}{{ m[\'role\'] }}: {{ m[\'content\'] }}\\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"\n    return t\n\ntok = tokenizer()\ncfg = dict(vocab_size=259, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,\n           num_key_value_heads=2, pad_token_id=256, eos_token_id=257, max_position_embeddings=4096)\nfor path in sys.argv[1:]:\n    kind = "parquet" if path.endswith(".parquet") else "json"\n    ds = load_dataset(kind, data_files=path, split="train")\n    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names), ds.column_names\n    conv = is_conversational(ds[0])\n    ds = ds.select(range(min(8, len(ds))))\n    rm = LlamaForSequenceClassification(LlamaConfig(num_labels=1, **cfg))\n    args = RewardConfig(output_dir="out", max_steps=1, per_device_train_batch_size=2, report_to=[],\n                        max_length=512, use_cpu=True, logging_steps=1, save_strategy="no")\n    t = RewardTrainer(model=rm, args=args, train_dataset=ds, processing_class=tok)\n    loss = t.train().training_loss\n    print(f"OK RewardTrainer {path} rows={len(ds)} conversational={conv} loss={loss:.4f} margin_col={\'margin\' in ds.column_names}")\n    pol = LlamaForCausalLM(LlamaConfig(**cfg))\n    dargs = DPOConfig(output_dir="out", max_steps=1, per_device_train_batch_size=2, report_to=[],\n                      max_length=512, use_cpu=True, save_strategy="no")\n    d = DPOTrainer(model=pol, ref_model=LlamaForCausalLM(LlamaConfig(**cfg)), args=dargs, train_dataset=ds, processing_class=tok)\n    loss = d.train().training_loss\n    print(f"OK DPOTrainer {path} loss={loss:.4f}")\n'

SOURCES = {
    "hh.jsonl": "hh_rlhf_sample.jsonl.gz",
    "hh.parquet": "hh_rlhf_sample.jsonl.gz",
    "conv.parquet": "formats/conversational.jsonl",
    "std.jsonl": "formats/trl_standard.jsonl",
    "ranked.parquet": "formats/ranked.jsonl",
    "pairwise.jsonl": "formats/pairwise.csv",
}


@pytest.mark.slow
@pytest.mark.skipif(
    not TRL_PY.exists(), reason="TRL peer venv absent (make bench creates .bench-venvs/trl)"
)
def test_trl_reward_and_dpo_trainers_read_our_files(data_dir, tmp_path):
    for out, src in SOURCES.items():
        write_preferences(read_preferences(data_dir / src).records, tmp_path / out)
    (tmp_path / "check.py").write_text(SCRIPT)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    r = subprocess.run(
        [str(TRL_PY), "check.py", *SOURCES],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ok = [line for line in r.stdout.splitlines() if line.startswith("OK ")]
    assert len(ok) == 2 * len(SOURCES), r.stdout
