"""Encoders: the :class:`Encoder` protocol and one module per model family.

Only the registry is imported here; each family's module (and torch) loads
when a model of that type is loaded.
"""

from vembed_bench.encoders.base import Encoder, IdentifiedEncoder, l2_normalize
from vembed_bench.encoders.identity import ModelIdentity, model_identity
from vembed_bench.encoders.loader import (
    MODEL_TYPES,
    is_multivector_model,
    load_encoder,
    load_multivector_encoder,
    register_model_type,
)
from vembed_bench.encoders.naming import display_name

__all__ = [
    "MODEL_TYPES", "Encoder", "IdentifiedEncoder", "ModelIdentity", "display_name",
    "is_multivector_model", "l2_normalize", "load_encoder", "load_multivector_encoder",
    "model_identity", "register_model_type",
]
