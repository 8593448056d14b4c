"""Encoders behind one contract (`backbone.py`) and the SSL heads.

Importing this package registers every backbone in `MODELS`, keyed by
`config.model.name`: 'vit' (`vit.py`) and 'resnet18' (`resnet.py`).
"""

from lwfedssl_jax.models import resnet, vit   # importing registers their backbones
from lwfedssl_jax.models.backbone import MODELS, Backbone, make_backbone, model_fields

__all__ = ['MODELS', 'Backbone', 'make_backbone', 'model_fields', 'resnet', 'vit']
