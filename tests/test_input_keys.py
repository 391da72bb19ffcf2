"""``input_key(item, role)``: equal keys must mean equal vectors, and keys must tell apart
what the model computes differently (prompts, role-specific towers).

The guarantee is checked against the encoders' own outputs: every pair of
(item, role) with equal keys is encoded and the vectors compared. Image keys
are checked against sha256 of the file bytes computed here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
sentence_transformers = pytest.importorskip("sentence_transformers")

from image_fixtures import write_karpathy  # noqa: E402
from tiny_image_models import make_clip, minilm_folder  # noqa: E402

from vembed_bench.data import load_task, resolve_card  # noqa: E402
from vembed_bench.data.data_root import use_data_root  # noqa: E402
from vembed_bench.data.types import Item  # noqa: E402
from vembed_bench.encoders.loader import load_encoder  # noqa: E402
from vembed_bench.errors import VembedError  # noqa: E402
from vembed_bench.options import EncoderOptions  # noqa: E402

CAPTIONS = {"a.jpg": ["A dog runs on the beach.", "A brown dog."], "b.jpg": ["Two cats sleep on a sofa."]}


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VEMBED_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture
def flickr(tmp_path):
    write_karpathy(tmp_path, [(name, "test", caps) for name, caps in CAPTIONS.items()] + [("c.jpg", "train", ["x"])])
    with use_data_root(tmp_path):
        return load_task(resolve_card("flickr30k_t2i")), load_task(resolve_card("flickr30k_i2t"))


def sha256_key(path: Path) -> str:
    return "image:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_flickr_captions_and_images_share_keys_across_directions(clip_folder, flickr):
    t2i, i2t = flickr
    clip = load_encoder(clip_folder, EncoderOptions(show_progress=False, num_workers=0, device="cpu"))
    query_keys = {q.text: clip.input_key(q, "query") for q in t2i.queries}
    document_keys = {d.text: clip.input_key(d, "document") for d in i2t.corpus}
    assert set(query_keys) == {c for caps in CAPTIONS.values() for c in caps}
    assert query_keys == document_keys  # the t2i queries are the i2t corpus
    for image_item in [*t2i.corpus, *i2t.queries]:
        for role in ("query", "document"):
            assert clip.input_key(image_item, role) == sha256_key(image_item.image)

    # Equal keys, equal vectors: the same captions and images encoded in the two directions.
    caption_q = dict(zip((q.text for q in t2i.queries), clip.encode_queries(t2i.queries)))
    caption_d = dict(zip((d.text for d in i2t.corpus), clip.encode_documents(i2t.corpus)))
    for text in caption_q:
        np.testing.assert_allclose(caption_q[text], caption_d[text], atol=1e-6)
    image_d = dict(zip((d.id for d in t2i.corpus), clip.encode_documents(t2i.corpus)))
    image_q = dict(zip((q.id for q in i2t.queries), clip.encode_queries(i2t.queries)))
    for image_id in image_d:
        np.testing.assert_allclose(image_d[image_id], image_q[image_id], atol=1e-6)


def test_image_keys_follow_content_not_path(clip_folder, flickr, tmp_path):
    t2i, _ = flickr
    clip = load_encoder(clip_folder, EncoderOptions(show_progress=False, num_workers=0, device="cpu"))
    original = t2i.corpus[0]
    copy = tmp_path / "renamed.jpg"
    shutil.copyfile(original.image, copy)
    assert clip.input_key(Item("x", image=copy), "query") == clip.input_key(original, "document")
    assert clip.input_key(t2i.corpus[1], "document") != clip.input_key(original, "document")


def test_prompts_change_the_key_exactly_as_they_change_the_input(clip_folder):
    prompted = load_encoder(clip_folder, EncoderOptions(query_prompt="a photo of ", show_progress=False,
                                                        num_workers=0, device="cpu"))
    caption = Item("c", text="a dog")
    assert prompted.input_key(caption, "query") != prompted.input_key(caption, "document")
    # The query "a dog" under the prompt is the document "a photo of a dog": same key, same vector.
    spelled_out = Item("d", text="a photo of a dog")
    assert prompted.input_key(caption, "query") == prompted.input_key(spelled_out, "document")
    np.testing.assert_allclose(prompted.encode_queries([caption]), prompted.encode_documents([spelled_out]),
                               atol=1e-6)


def test_text_encoder_keys_follow_prompts_and_instructions():
    plain = load_encoder(minilm_folder(), model_type="hf", device="cpu", show_progress=False)
    item = Item("q", text="how do rockets work")
    assert plain.input_key(item, "query") == plain.input_key(item, "document")
    np.testing.assert_allclose(plain.encode_queries([item]), plain.encode_documents([item]), atol=1e-6)
    assert plain.input_key(Item("q", text="x", instruction="Find"), "query") != plain.input_key(
        Item("q", text="x"), "query")
    prompted = load_encoder(minilm_folder(), model_type="hf", device="cpu", show_progress=False,
                            query_prompt="query: ", document_prompt="passage: ")
    assert prompted.input_key(item, "query") != prompted.input_key(item, "document")
    with pytest.raises(VembedError, match="role 'corpus'"):
        plain.input_key(item, "corpus")


def test_sentence_transformers_router_keys_carry_the_role():
    from tokenizers import Tokenizer

    try:
        from sentence_transformers.sentence_transformer.modules import Router, StaticEmbedding
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Router, StaticEmbedding

    tokenizer = Tokenizer.from_file(str(minilm_folder() / "tokenizer.json"))
    torch.manual_seed(0)
    router = Router.for_query_document(query_modules=[StaticEmbedding(tokenizer, embedding_dim=8)],
                                       document_modules=[StaticEmbedding(tokenizer, embedding_dim=8)])
    two_towers = load_encoder(sentence_transformers.SentenceTransformer(modules=[router], device="cpu"),
                              show_progress=False)
    one_tower = load_encoder(minilm_folder(), device="cpu", show_progress=False)
    item = Item("x", text="hello world")
    # Different towers: different keys, and the vectors really differ.
    assert two_towers.input_key(item, "query") != two_towers.input_key(item, "document")
    assert not np.allclose(two_towers.encode_queries([item]), two_towers.encode_documents([item]), atol=1e-3)
    # One tower, no prompts: one key, one vector.
    assert one_tower.input_key(item, "query") == one_tower.input_key(item, "document")
    np.testing.assert_allclose(one_tower.encode_queries([item]), one_tower.encode_documents([item]), atol=1e-6)


def test_wrapped_objects_key_the_role_when_their_methods_differ():
    class OneMethod:
        def encode(self, texts):
            return np.array([[len(t), 1.0] for t in texts])

    class TwoMethods(OneMethod):
        def encode_query(self, texts):
            return np.array([[1.0, len(t)] for t in texts])

        def encode_document(self, texts):
            return self.encode(texts)

    item = Item("x", text="abc")
    one, two = load_encoder(OneMethod()), load_encoder(TwoMethods())
    assert one.input_key(item, "query") == one.input_key(item, "document")
    assert two.input_key(item, "query") != two.input_key(item, "document")
    assert not np.allclose(two.encode_queries([item]), two.encode_documents([item]))
