"""``model.type: llm``: a decoder LLM (Llama, Qwen2/3, Mistral, SmolLM2...) trained as an embedder.

The LLM-to-embedding recipe (LLM2Vec, E5-Mistral, NV-Embed): take a causal LM,
optionally switch its attention to bidirectional (``model.bidirectional``),
pool its hidden states (``model.pooling``: eos, last, mean, weighted_mean,
skip_instruction) and train LoRA adapters with a contrastive loss.

Why it wraps the eval encoder instead of re-implementing it: the trainable
module holds an :class:`~vembed_bench.encoders.llm_encoder.LLMEncoder` and
calls its ``tokenize`` (EOS append, truncation, skip-instruction mask), its
``_collate`` (padding side) and its ``embed`` (positions from the mask,
``llm_pool``, L2 norm). Training and evaluation therefore embed a text with
the very same code, and the saved folder carries ``vembed_encoder.json`` so a
plain ``vembed-bench eval --model FOLDER`` uses the same pooling, attention,
prompts and max length.

Prompts: the data reader already prepends ``data.query_prompt`` /
``data.document_prompt`` to training texts, so the encoder here uses no prompt
of its own, and both evaluations get exactly the recipe's prompts (not the LLM
encoder's default instruction template).

QLoRA (``lora.load_in_4bit``) loads the base in 4-bit NF4 with bitsandbytes on
CUDA; on save the adapter is merged into a full-precision copy of the base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from vembed_bench.encoders.llm_encoder import LLMEncoder, load_causal_lm, write_settings
from vembed_bench.encoders.llm_pooling import LLM_POOLING_MODES
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

__all__ = ["LLMEmbedder", "build", "eval_options"]

DEFAULT_POOLING = "mean"
"""``model.pooling`` when the recipe leaves it empty (no EOS token needed; robust zero-shot)."""


def _pooling(recipe: Any) -> str:
    pooling = recipe.model.pooling or DEFAULT_POOLING
    if pooling not in LLM_POOLING_MODES:
        raise VembedError(
            f"model.pooling {pooling!r} is not an LLM pooling; choose one of {', '.join(LLM_POOLING_MODES)}"
        )
    return pooling


def _attention(recipe: Any) -> str:
    return "bidirectional" if recipe.model.bidirectional else "causal"


def build(recipe: Any, device: str = "cpu") -> "LLMEmbedder":
    """The trainable embedder for ``recipe`` (LoRA applied when ``lora.enabled``)."""
    from vembed_bench.train.model import resolve_model_path, with_lora

    lora = recipe.lora
    if lora.load_in_4bit:
        _check_qlora(recipe, device)
    options = EncoderOptions(
        pooling=_pooling(recipe),
        attention=_attention(recipe),
        query_prompt="",  # the data reader already applied data.query_prompt
        document_prompt="",
        max_length=recipe.model.max_length,
        device=device,
        dtype="float32",  # master weights; the loop autocasts to bf16 on GPU
        trust_remote_code=recipe.model.trust_remote_code,
        show_progress=False,
    )
    encoder = _TrainingEncoder(resolve_model_path(recipe), options, quantize=lora.load_in_4bit)
    model = LLMEmbedder(encoder)
    if lora.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model.set_inner(
            prepare_model_for_kbit_training(
                model.model, use_gradient_checkpointing=recipe.model.gradient_checkpointing
            )
        )
    elif recipe.model.gradient_checkpointing:
        model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora.enabled:
        model.set_inner(with_lora(model.model, lora))
    return model


def eval_options(recipe: Any, *, tuned: bool) -> dict[str, Any]:
    """Base model: the training pooling / attention / prompts / max length; tuned: its JSON has them."""
    if tuned:  # the folder's vembed_encoder.json holds the rest; detection finds the type
        return {"trust_remote_code": True} if recipe.model.trust_remote_code else {}
    return {
        "model_type": "llm",
        "pooling": _pooling(recipe),
        "attention": _attention(recipe),
        "query_prompt": recipe.data.query_prompt,  # "" = no prompt, not the default template
        "document_prompt": recipe.data.document_prompt,
        "max_length": recipe.model.max_length,
        "trust_remote_code": recipe.model.trust_remote_code,
    }


class _TrainingEncoder(LLMEncoder):
    """The eval encoder, loading the base in 4-bit when asked (bitsandbytes models cannot ``.to()``)."""

    def __init__(self, source: str, options: EncoderOptions, *, quantize: bool) -> None:
        self._quantize = quantize
        super().__init__(source, options)

    def _load_llm(self, attn_implementation: str | None) -> tuple[Any, Any]:
        if not self._quantize:
            return super()._load_llm(attn_implementation)
        import torch
        from transformers import BitsAndBytesConfig

        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        return load_causal_lm(
            self.source,
            dtype="bfloat16",
            attn_implementation=attn_implementation,
            trust_remote_code=self.trust_remote_code,
            quantization_config=config,
            device_map={"": self.device},
        )


def _check_qlora(recipe: Any, device: str) -> None:
    import importlib.util

    import torch

    if not recipe.lora.enabled:
        raise VembedError("lora.load_in_4bit needs lora.enabled: true (QLoRA trains adapters on a 4-bit base)")
    if not (str(device).startswith("cuda") and torch.cuda.is_available()):
        raise VembedError(
            f"lora.load_in_4bit (QLoRA) needs a CUDA GPU, but training runs on {device}; "
            "set lora.load_in_4bit=false to train LoRA in full precision"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise VembedError("lora.load_in_4bit (QLoRA) needs the bitsandbytes package; pip install bitsandbytes")


def _nn_module() -> type:
    import torch

    return torch.nn.Module


class LLMEmbedder(_nn_module()):  # type: ignore[misc]
    """Trainable decoder-LLM embedder (the protocol of :mod:`vembed_bench.train.model`)."""

    accepts = frozenset({"text"})

    def __init__(self, encoder: LLMEncoder) -> None:
        super().__init__()
        self.model = encoder.model  # registered: parameters, train()/eval(), state_dict
        self.encoder = encoder  # plain attribute (not an nn.Module): tokenize / collate / embed

    def set_inner(self, model: Any) -> None:
        """Swap the wrapped model (peft / k-bit preparation) in both places at once."""
        self.model = model
        self.encoder.model = model

    def tokenize(self, inputs: Sequence[Any]) -> dict[str, Any]:
        """Padded ``input_ids`` / ``attention_mask`` (+ ``embed_mask``) exactly as the encoder builds them."""
        texts = []
        for value in inputs:
            if not isinstance(value, str):
                raise VembedError("model.type llm embeds text only; the data has an image input")
            texts.append(value)
        enc = self.encoder.tokenize(texts)
        lengths = [len(ids) for ids in enc["input_ids"]]
        return self.encoder._collate(enc, list(range(len(texts))), lengths)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        return {"sentence_embedding": self.encoder.embed(features)}

    def save_trained(self, folder: Path, prompts: dict[str, str] | None = None) -> Path:
        """A plain HF folder (LoRA merged, standard attention in ``config.json``), the tokenizer,
        ``vembed_encoder.json`` (pooling, attention, prompts, max length) and the adapter
        alone in ``<folder>-adapter``."""
        from vembed_bench.encoders.bidirectional import PREFIX
        from vembed_bench.train.model import merged_copy

        folder = Path(folder)
        adapter = folder.parent / f"{folder.name}-adapter"
        if getattr(self.encoder, "_quantize", False):  # a 4-bit base cannot be merged exactly
            model = self._merged_on_full_precision(adapter)
        else:
            model = merged_copy(self.model, adapter)
        impl = str(getattr(model.config, "_attn_implementation", "") or "")
        if impl.startswith(PREFIX):  # the registered name exists only in this process
            model.set_attn_implementation(impl.removeprefix(PREFIX))
        model.save_pretrained(str(folder))
        self.encoder.tokenizer.save_pretrained(str(folder))
        record = self.encoder.settings_record()
        prompts = prompts or {}
        record.update(query_prompt=prompts.get("query", ""), document_prompt=prompts.get("document", ""))
        write_settings(folder, record)
        return folder

    def _merged_on_full_precision(self, adapter: Path) -> Any:
        """QLoRA: the adapter, saved, then merged into a fresh full-precision copy of the base."""
        from peft import PeftModel

        self.model.save_pretrained(str(adapter))
        _, base = load_causal_lm(self.encoder.source, trust_remote_code=self.encoder.trust_remote_code)
        return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
