"""Trainable model types beyond sentence-transformers (see :mod:`vembed_bench.train.model`).

One module per ``model.type``; each has ``build(recipe, device)`` returning a
``torch.nn.Module`` that follows the sentence-transformers-like protocol of
:mod:`vembed_bench.train.model`, and ``eval_options(recipe, tuned)``.
"""
