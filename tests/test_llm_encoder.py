"""Decoder-LLM embedder: poolings by hand, padding sides, instruction templates and
bidirectional attention (eager and sdpa) on tiny random Qwen2 / Qwen3 / Llama / GPT-2.

References are independent of the code under test: pooled vectors computed by
hand, unpadded single-text forward passes of the raw ``transformers`` model, and
the word-level tokenizer's own split of the text alone.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest

from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.llm_fixtures import make_gpt2, make_llm  # noqa: E402
from vembed_bench.encoders.llm_encoder import LLMEncoder  # noqa: E402
from vembed_bench.encoders.llm_pooling import llm_pool, position_weights  # noqa: E402
from vembed_bench.encoders.loader import detect_model_type, load_encoder  # noqa: E402
from vembed_bench.options import EncoderOptions  # noqa: E402

TEXTS = ["how do i sort a list in python", "what is the gil", "read file"]


@pytest.fixture(scope="module")
def llm_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("llms")
    dirs = {family: make_llm(root / family, family) for family in ("qwen2", "qwen3", "llama")}
    dirs["gpt2"] = make_gpt2(root / "gpt2")
    return dirs


def _llm(folder: Path, **options) -> LLMEncoder:
    return LLMEncoder(folder, EncoderOptions(tokenizer=folder / "tokenizer", show_progress=False, **options))


# -- pooling against hand computations ------------------------------------------------------
def _hidden() -> "torch.Tensor":
    return torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)


@pytest.mark.parametrize("mask_rows", [[[1, 1, 1, 0], [1, 1, 0, 0]], [[0, 1, 1, 1], [0, 0, 1, 1]]])
def test_poolings_by_hand_either_padding_side(mask_rows: list[list[int]]) -> None:
    hidden, mask = _hidden(), torch.tensor(mask_rows)
    for b in range(2):
        real = [i for i in range(4) if mask_rows[b][i]]
        h = hidden[b].numpy()
        expected_last = h[real[-1]]
        expected_mean = h[real].mean(axis=0)
        w = np.arange(1, len(real) + 1, dtype=np.float32)
        expected_weighted = (h[real] * (w / w.sum())[:, None]).sum(axis=0)
        np.testing.assert_allclose(llm_pool("last", hidden, mask)[b].numpy(), expected_last)
        np.testing.assert_allclose(llm_pool("eos", hidden, mask)[b].numpy(), expected_last)
        np.testing.assert_allclose(llm_pool("mean", hidden, mask)[b].numpy(), expected_mean, rtol=1e-6)
        np.testing.assert_allclose(llm_pool("weighted_mean", hidden, mask)[b].numpy(), expected_weighted,
                                   rtol=1e-6)


def test_position_weights_by_hand() -> None:
    weights = position_weights(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 0, 0, 0]]))
    np.testing.assert_allclose(weights[0].numpy(), [0, 0, 1 / 6, 2 / 6, 3 / 6], rtol=1e-6)
    np.testing.assert_allclose(weights[1].numpy(), [1 / 3, 2 / 3, 0, 0, 0], rtol=1e-6)


def test_skip_instruction_pool_by_hand() -> None:
    hidden, mask = _hidden(), torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    embed = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]])  # row 2: nothing after the separator
    pooled = llm_pool("skip_instruction", hidden, mask, embed)
    np.testing.assert_allclose(pooled[0].numpy(), hidden[0, 2:].mean(0).numpy())
    np.testing.assert_allclose(pooled[1].numpy(), hidden[1, 1:].mean(0).numpy())  # falls back
    with pytest.raises(VembedError):
        llm_pool("skip_instruction", hidden, mask)


# -- tokenization, templates, detection -----------------------------------------------------
def test_detected_as_llm_with_default_query_template(llm_dirs: dict[str, Path]) -> None:
    assert detect_model_type(llm_dirs["qwen2"]).name == "llm"
    assert detect_model_type(llm_dirs["gpt2"]).name == "llm"
    enc = load_encoder(str(llm_dirs["qwen2"]), show_progress=False,
                       tokenizer=llm_dirs["qwen2"] / "tokenizer", instruction="answer the question")
    assert isinstance(enc, LLMEncoder) and enc.pooling == "eos"
    assert enc.prompts == {"query": "Instruct: {instruction}\nQuery: {text}", "document": ""}
    seen: list[str] = []
    enc.encode_texts = lambda texts, **kw: seen.extend(texts) or np.zeros((len(texts), 2))  # type: ignore
    enc.encode_queries([Item("q", "what is the gil"), Item("r", "read file", instruction="use open")])
    enc.encode_documents([Item("d", "read file", title="open")])
    assert seen == ["Instruct: answer the question\nQuery: what is the gil",
                    "Instruct: use open\nQuery: read file", "open read file"]


def test_task_placeholder_and_eos_appended(llm_dirs: dict[str, Path]) -> None:
    enc = _llm(llm_dirs["llama"], query_prompt="Instruct: {task}\nQuery: {text}")
    assert enc.prompts["query"] == "Instruct: {instruction}\nQuery: {text}"
    ids = enc.tokenize(["what is the gil"])["input_ids"][0]
    assert ids == enc.tokenizer("what is the gil")["input_ids"] + [enc.tokenizer.eos_token_id]


def test_skip_instruction_mask_marks_exactly_the_text_tokens(llm_dirs: dict[str, Path]) -> None:
    enc = _llm(llm_dirs["qwen2"], pooling="skip_instruction")
    text = "what is the gil: a lock"  # ':' inside the text must not move the boundary
    full = f"Instruct: answer the question\nQuery: {text}"
    out = enc.tokenize([full, "read file"])
    ids, mask = out["input_ids"][0], out["embed_mask"][0]
    alone = enc.tokenizer(text)["input_ids"]
    assert [i for i, m in zip(ids, mask) if m] == alone
    assert ids[-len(alone):] == alone and sum(mask) == len(alone)
    assert out["embed_mask"][1] == [1, 1]  # no separator (documents): every token


# -- padding sides agree with unpadded single-text forwards ---------------------------------
def _reference(folder: Path, text: str, pooling: str, tokenizer, eos: bool) -> np.ndarray:
    model = transformers.AutoModel.from_pretrained(folder).eval()
    ids = tokenizer(text)["input_ids"] + ([tokenizer.eos_token_id] if eos else [])
    with torch.no_grad():
        h = model(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
    if pooling in ("eos", "last"):
        v = h[-1]
    elif pooling == "mean":
        v = h.mean(0)
    else:
        w = np.arange(1, len(ids) + 1, dtype=np.float32)
        v = (h * (w / w.sum())[:, None]).sum(0)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("family", ["qwen3", "gpt2"])
@pytest.mark.parametrize("pooling", ["eos", "last", "mean", "weighted_mean"])
def test_left_and_right_padding_match_unpadded(llm_dirs: dict[str, Path], family: str, pooling: str) -> None:
    folder = llm_dirs[family]
    embs = {}
    for side in ("left", "right"):
        enc = _llm(folder, pooling=pooling, padding_side=side, query_prompt="")
        embs[side] = enc.encode_queries([Item(str(i), t) for i, t in enumerate(TEXTS)], batch_size=3)
    ref = np.stack([_reference(folder, t, pooling, enc.tokenizer, pooling == "eos") for t in TEXTS])
    np.testing.assert_allclose(embs["left"], ref, atol=2e-5)
    np.testing.assert_allclose(embs["right"], ref, atol=2e-5)


# -- bidirectional attention ----------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen2", "qwen3", "llama"])
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_bidirectional_first_token_sees_later_tokens(llm_dirs: dict[str, Path], family: str, impl: str) -> None:
    a, b = "how do i sort a list", "how do i sort a dict"  # differ only in the last token
    first = {}
    for attention in ("causal", "bidirectional"):
        enc = _llm(llm_dirs[family], attention=attention, attn_implementation=impl,
                         pooling="mean", padding_side="left")
        assert enc.describe()["attn_implementation"].endswith(impl)
        ids = enc.tokenize([a, b])["input_ids"]
        pad = [[0] * (max(map(len, ids)) - len(r)) for r in ids]  # equal lengths here, no pads
        features = {"input_ids": torch.tensor([p + r for p, r in zip(pad, ids)]),
                    "attention_mask": torch.tensor([[0] * len(p) + [1] * len(r) for p, r in zip(pad, ids)])}
        with torch.no_grad():
            hidden = enc.hidden_states(features)
        first[attention] = (hidden[0, 0] - hidden[1, 0]).abs().max().item()
        if attention == "bidirectional":
            # padding is still masked: a padded row equals the same text alone
            short = enc.tokenize(["sort"])["input_ids"][0]
            long = ids[0]
            batch = {"input_ids": torch.tensor([[0] * (len(long) - len(short)) + short, long]),
                     "attention_mask": torch.tensor([[0] * (len(long) - len(short)) + [1] * len(short),
                                                     [1] * len(long)])}
            alone = {"input_ids": torch.tensor([short]), "attention_mask": torch.ones(1, len(short), dtype=torch.long)}
            with torch.no_grad():
                padded, single = enc.hidden_states(batch), enc.hidden_states(alone)
            torch.testing.assert_close(padded[0, -len(short):], single[0], atol=2e-5, rtol=1e-4)
    assert first["causal"] == 0.0
    assert first["bidirectional"] > 1e-4


def test_bidirectional_changes_fingerprint_and_is_recorded(llm_dirs: dict[str, Path]) -> None:
    causal = _llm(llm_dirs["qwen2"])
    bidir = load_encoder(str(llm_dirs["qwen2"]), show_progress=False,
                         tokenizer=llm_dirs["qwen2"] / "tokenizer", attention="bidirectional")
    assert bidir.describe()["attention"] == "bidirectional"
    assert causal.fingerprint() != bidir.fingerprint()
    with pytest.raises(VembedError):
        _llm(llm_dirs["qwen2"], attention="both")
    with pytest.raises(VembedError):
        _llm(llm_dirs["qwen2"], pooling="cls")
