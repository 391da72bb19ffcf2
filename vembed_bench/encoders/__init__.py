"""Encoders: the :class:`Encoder` protocol and one module per model family.

Only the registry is imported here; each family's module (and torch) loads
when a model of that type is loaded.
"""

from vembed_bench.encoders.base import Encoder, l2_normalize
from vembed_bench.encoders.loader import load_encoder, register_model_type

__all__ = ["Encoder", "l2_normalize", "load_encoder", "register_model_type"]
