"""ColQwen2 through transformers' own classes (tiny random weights): our token matrices and
MaxSim ranking against direct single-item forward passes scored by hand."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest

from vembed_bench.data.types import Item
from vembed_bench.options import EncoderOptions

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "ColQwen2ForRetrieval"):
    pytest.skip("this transformers has no ColQwen2", allow_module_level=True)

SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def tiny_colqwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = tmp_path_factory.mktemp("colqwen")
    vocab = {"<pad>": 0, "<|endoftext|>": 1, "<unk>": 2}
    for token in SPECIALS:
        vocab[token] = len(vocab)
    for word in "user Describe the image . Query : a red square blue cat dog photo".split():
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>",
                                                eos_token="<|endoftext|>", unk_token="<unk>",
                                                additional_special_tokens=SPECIALS)
    fast.image_token, fast.video_token = "<|image_pad|>", "<|video_pad|>"
    transformers.ColQwen2Processor(
        image_processor=transformers.Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56), tokenizer=fast,
    ).save_pretrained(folder / "processor")
    vl = transformers.Qwen2VLConfig(
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2),
        image_token_id=5, video_token_id=6, vision_start_token_id=3, vision_end_token_id=4)
    torch.manual_seed(0)
    transformers.ColQwen2ForRetrieval(transformers.ColQwen2Config(vlm_config=vl, embedding_dim=8)).save_pretrained(folder)
    Image.new("RGB", (56, 56), (200, 10, 10)).save(folder / "red.png")
    Image.new("RGB", (84, 56), (10, 10, 200)).save(folder / "blue.png")
    return folder


def test_colqwen2_tokens_and_maxsim_match_direct_forward(tiny_colqwen: Path) -> None:
    from PIL import Image

    from vembed_bench.encoders.colvision import ColVisionEncoder
    from vembed_bench.search.maxsim import maxsim_search

    enc = ColVisionEncoder(tiny_colqwen, EncoderOptions(processor=tiny_colqwen / "processor", show_progress=False,
                                                      device="cpu"))
    queries = [Item("q1", "a red square"), Item("q2", "blue cat photo")]
    docs = [Item("d1", image=tiny_colqwen / "red.png"), Item("d2", image=tiny_colqwen / "blue.png"),
            Item("d3", "a red square")]
    q = enc.encode_queries_multi(queries, batch_size=2)
    d = enc.encode_documents_multi(docs, batch_size=2)

    processor = transformers.AutoProcessor.from_pretrained(tiny_colqwen / "processor")
    model = transformers.ColQwen2ForRetrieval.from_pretrained(tiny_colqwen).eval()

    def direct(item: Item) -> np.ndarray:  # one item, no padding
        inputs = (processor(images=[Image.open(item.image).convert("RGB")], return_tensors="pt") if item.image
                  else processor(text=[item.text], return_tensors="pt"))
        with torch.no_grad():
            return model(**inputs).embeddings[0].numpy()

    ref_q, ref_d = [direct(i) for i in queries], [direct(i) for i in docs]
    for got, ref in zip(q + d, ref_q + ref_d):
        np.testing.assert_allclose(got, ref, atol=2e-5)
    by_hand = np.array([[sum(max(float(a @ b) for b in dd) for a in qq) for dd in ref_d] for qq in ref_q])
    found = maxsim_search(q, d, 3)
    for i in range(len(queries)):
        assert found.indices[i].tolist() == sorted(range(3), key=lambda j: (-by_hand[i, j], j))
        np.testing.assert_allclose(found.scores[i], np.sort(by_hand[i])[::-1], atol=1e-4)
