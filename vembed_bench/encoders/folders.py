"""Reading model-folder metadata without loading any weights.

Type detection and encoder defaults (pooling, max length, the transformer
sub-folder of old sentence-transformers checkpoints) all come from small JSON
files; reading them here keeps torch out of detection, so a wrong folder is
reported in milliseconds instead of after a model load.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vembed_bench.errors import VembedError

ST_MARKERS = ("modules.json", "config_sentence_transformers.json")

# A hub id is "org/name": two non-empty parts of letters, digits, '-', '_', '.'.
_HUB_ID = re.compile(r"^(?!\.{1,2}/)[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9_]$")

# Encoder-only families whose [CLS]/<s> token is trained as a sentence summary.
BERT_LIKE = frozenset(
    {
        "bert",
        "roberta",
        "xlm-roberta",
        "xlm-roberta-xl",
        "camembert",
        "distilbert",
        "electra",
        "deberta",
        "deberta-v2",
        "albert",
        "ernie",
        "ernie_m",
        "mpnet",
        "megatron-bert",
        "mobilebert",
        "roformer",
        "rembert",
        "nomic_bert",
        "jina_bert",
        "modernbert",
        "new",
        "xlm",
        "longformer",
        "big_bird",
        "nystromformer",
        "squeezebert",
        "funnel",
        "luke",
        "data2vec-text",
    }
)

# Decoder LLM / multimodal families: not plain text encoders (later model types handle them).
_NOT_ENCODER_TYPES = frozenset(
    {
        "llama",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen3",
        "qwen2_moe",
        "qwen3_moe",
        "gemma",
        "gemma2",
        "gemma3",
        "gemma3_text",
        "phi",
        "phi3",
        "gpt2",
        "gptj",
        "gpt_neox",
        "falcon",
        "opt",
        "bloom",
        "starcoder2",
        "olmo",
        "clip",
        "siglip",
        "siglip2",
        "blip",
        "qwen2_vl",
        "qwen2_5_vl",
        "llava",
        "paligemma",
        "idefics3",
    }
)
_DECODER_ARCH_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "ForVision2Seq")
_ENCODER_ARCH_SUFFIXES = ("Model", "ForMaskedLM", "ForPreTraining")


def looks_like_hub_id(text: str) -> bool:
    """``org/name`` and not something path-like (absolute, ``./``, ``~``, backslashes)."""
    return bool(_HUB_ID.match(text)) and ".." not in text


def read_json(path: Path) -> Any:
    """Parse a JSON file, turning a syntax error into a one-line :class:`VembedError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise VembedError(f"{path}: invalid JSON ({exc})") from None


def is_st_folder(folder: Path) -> bool:
    """A sentence-transformers checkpoint saves ``modules.json`` (and usually its own config)."""
    return any((folder / name).is_file() for name in ST_MARKERS)


def st_modules(folder: Path) -> list[dict[str, Any]]:
    """The ``modules.json`` entries (empty when the file is absent)."""
    path = folder / "modules.json"
    if not path.is_file():
        return []
    data = read_json(path)
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


def transformer_folder(folder: Path) -> Path:
    """Where ``config.json`` lives: the folder itself, or the Transformer module's
    sub-folder in old sentence-transformers checkpoints (``0_Transformer/``)."""
    for module in st_modules(folder):
        if str(module.get("type", "")).endswith("Transformer") and module.get("path"):
            sub = folder / str(module["path"])
            if (sub / "config.json").is_file():
                return sub
    return folder


def st_extra_modules(folder: Path) -> list[str]:
    """Module types besides Transformer/Pooling/Normalize (e.g. Dense): a plain
    Hugging Face load would silently skip them."""
    plain = ("Transformer", "Pooling", "Normalize")
    return [
        str(m.get("type", "?"))
        for m in st_modules(folder)
        if not str(m.get("type", "")).endswith(plain)
    ]


def is_plain_st_folder(folder: Path) -> bool:
    """A sentence-transformers folder our HF encoder computes exactly: an encoder-only
    Transformer, one cls / mean / last-token Pooling that includes the prompt, an optional
    Normalize, nothing else (no Dense, Router, lower-casing module or default prompt).

    Such folders skip importing sentence-transformers (seconds of a cold start) and run
    our faster forward loop; anything else stays with the library, which knows every module.
    """
    modules = st_modules(folder)
    types = [str(m.get("type", "")) for m in modules]
    if not types or not any(t.endswith("Transformer") for t in types) or st_extra_modules(folder):
        return False
    cfg = hf_config(folder)
    if cfg is None or not is_text_encoder_config(cfg):
        return False
    try:
        if st_pooling(folder) is None:
            return False
    except VembedError:  # max / weighted-mean / several modes: only the library has them
        return False
    pooling_cfg = _module_config(folder, "Pooling")
    st_cfg = read_json(folder / "config_sentence_transformers.json") if (
        folder / "config_sentence_transformers.json").is_file() else {}
    bert_cfg = _module_config(folder, "Transformer", "sentence_bert_config.json")
    return (pooling_cfg.get("include_prompt", True) is not False
            and not (isinstance(st_cfg, dict) and st_cfg.get("default_prompt_name"))
            and not bert_cfg.get("do_lower_case"))


def _module_config(folder: Path, module_type: str, name: str = "config.json") -> dict[str, Any]:
    """A module's JSON config (``{}`` when absent or not a mapping)."""
    for module in st_modules(folder):
        if str(module.get("type", "")).endswith(module_type):
            for base in (folder / str(module.get("path", "")), folder):
                if (base / name).is_file():
                    cfg = read_json(base / name)
                    return cfg if isinstance(cfg, dict) else {}
    return {}


def st_pooling(folder: Path) -> str | None:
    """Pooling mode saved by sentence-transformers, mapped to our names.

    Returns ``None`` when the folder has no Pooling module. Handles both the
    old ``pooling_mode_*_token(s)`` booleans and the newer ``pooling_mode`` key.
    """
    pool_dir = None
    for module in st_modules(folder):
        if str(module.get("type", "")).endswith("Pooling"):
            pool_dir = folder / str(module.get("path", ""))
            break
    if pool_dir is None:
        pool_dir = folder / "1_Pooling"
    path = pool_dir / "config.json"
    if not path.is_file():
        return None
    cfg = read_json(path)
    if not isinstance(cfg, dict):
        return None
    modes: list[str] = []
    mode = cfg.get("pooling_mode")
    if isinstance(mode, str):
        modes = [mode]
    elif isinstance(mode, list):
        modes = [str(m) for m in mode]
    else:
        legacy = {
            "pooling_mode_cls_token": "cls",
            "pooling_mode_mean_tokens": "mean",
            "pooling_mode_max_tokens": "max",
            "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
            "pooling_mode_weightedmean_tokens": "weightedmean",
            "pooling_mode_lasttoken": "lasttoken",
        }
        modes = [name for key, name in legacy.items() if cfg.get(key)]
    ours = {"cls": "cls", "mean": "mean", "lasttoken": "last", "last": "last"}
    if len(modes) != 1 or modes[0] not in ours:
        raise VembedError(
            f"{path}: pooling {'+'.join(modes) or 'none'} is not supported by the hf encoder; "
            "load this folder with --model-type sentence-transformers"
        )
    return ours[modes[0]]


def st_max_seq_length(folder: Path) -> int | None:
    """``max_seq_length`` from ``sentence_bert_config.json``, if saved."""
    for base in (folder, transformer_folder(folder)):
        path = base / "sentence_bert_config.json"
        if path.is_file():
            cfg = read_json(path)
            value = cfg.get("max_seq_length") if isinstance(cfg, dict) else None
            if isinstance(value, int) and value > 0:
                return value
    return None


def hf_config(folder: Path) -> dict[str, Any] | None:
    """``config.json`` of the folder (or its Transformer sub-folder), if any."""
    path = transformer_folder(folder) / "config.json"
    if not path.is_file():
        return None
    cfg = read_json(path)
    return cfg if isinstance(cfg, dict) else None


def is_text_encoder_config(cfg: dict[str, Any]) -> bool:
    """Whether ``config.json`` describes an encoder-only text model (BERT and kin).

    Known encoder families are accepted outright; otherwise an ``*Model`` /
    ``*ForMaskedLM`` architecture counts unless the config shows a decoder or a
    multimodal model, which later model types (LLM, CLIP, VLM) will claim.
    """
    model_type = str(cfg.get("model_type", "")).lower()
    if model_type in BERT_LIKE:
        return True
    if model_type in _NOT_ENCODER_TYPES or cfg.get("is_decoder") or cfg.get("is_encoder_decoder"):
        return False
    if "vision_config" in cfg or "text_config" in cfg:
        return False
    archs = [str(a) for a in cfg.get("architectures") or []]
    if any(a.endswith(_DECODER_ARCH_SUFFIXES) for a in archs):
        return False
    return bool(archs) and all(a.endswith(_ENCODER_ARCH_SUFFIXES) for a in archs)


def is_bert_like(cfg: dict[str, Any] | None) -> bool:
    return bool(cfg) and str(cfg.get("model_type", "")).lower() in BERT_LIKE  # type: ignore[union-attr]
