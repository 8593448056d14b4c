"""Tiny backbones for tests that need a stage plan of a given depth."""

from lwfedssl_jax.models.vit import ViTConfig, ViTEncoder


def vit(depth: int = 4, width: int = 16) -> ViTEncoder:
    """A ViT on 8x8 images (patch 4) with `depth` blocks."""
    return ViTEncoder(ViTConfig(image_size=8, patch_size=4, width=width, depth=depth,
                                num_heads=2, mlp_dim=2 * width))
