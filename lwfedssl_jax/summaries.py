"""TensorBoard summaries of a run, written with tensorboardX (no TensorFlow).

    tensorboard --logdir <workdir>/tensorboard

Scalars per round (`train/loss`, `comm/*`, `compute/*`, `time/round_s`),
evaluations per stage and at the end (`eval/*`, `final/*`) and, once per
stage, an image of the two augmented views a client trains on
(`augment/stage_<s>`). A resumed run purges the events logged after its
checkpoint, so the curves are those of an uninterrupted run.
"""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from lwfedssl_jax.data import augment

SUBDIR = 'tensorboard'


class TensorBoard:
    """Event files under `<workdir>/tensorboard`.

    Args:
      workdir: the run directory.
      resume_step: the checkpoint step the run resumes from (0 = fresh); events
        with a larger step are dropped (they are logged again).
    """

    def __init__(self, workdir: str, resume_step: int = 0):
        from tensorboardX import SummaryWriter   # lazy: ~0.3 s of protobuf imports
        self.logdir = os.path.join(workdir, SUBDIR)
        if not resume_step and os.path.isdir(self.logdir):
            shutil.rmtree(self.logdir)   # a fresh start: stale curves would mislead
        # The suffix keeps a resumed writer from reusing (and truncating) the
        # file of one started in the same second.
        self._writer = SummaryWriter(self.logdir, purge_step=resume_step + 1
                                     if resume_step else None,
                                     filename_suffix=f'.from_step{resume_step}')

    def scalars(self, step: int, values: dict) -> None:
        """Writes `{tag: number}` (None values, not measured, are skipped) and
        flushes, so a crash loses nothing logged before its checkpoint."""
        for tag, value in values.items():
            if value is not None:
                self._writer.add_scalar(tag, float(value), step)
        self._writer.flush()

    def image(self, tag: str, step: int, image: np.ndarray) -> None:
        """Writes one `[H, W, 3]` uint8 image."""
        self._writer.add_image(tag, image, step, dataformats='HWC')

    def close(self) -> None:
        self._writer.close()


def round_scalars(loss: float, used: dict, cumulative: dict, round_time_s: float) -> dict:
    """The per-round scalars: loss, this round's bytes per client, cumulative
    communication (paper "GB") and GFLOPs per client, round time."""
    return {
        'train/loss': loss,
        'comm/bytes_down_per_client': used['bytes_down'],
        'comm/bytes_up_per_client': used['bytes_up'],
        'comm/cumulative_paper_gb_per_client': cumulative['comm_paper_gb'],
        'compute/cumulative_paper_gflops_per_client': cumulative['paper_gflops'],
        'compute/cumulative_xla_gflops_per_client': cumulative['xla_gflops'],
        'time/round_s': round_time_s,
    }


def views_grid(images: np.ndarray, key: jax.Array, cfg: augment.AugmentConfig,
               upscale: int = 4) -> np.ndarray:
    """Rows: the images, their first and their second augmented view.

    Args:
      images: `[n, H, W, 3]` uint8 training images.
      key: the augmentation key (any; the grid is for looking at).
      cfg: the run's augmentation.
      upscale: nearest-neighbour zoom, so 16 px images are visible.

    Returns:
      `[3 * (H + 2) * upscale, n * (W + 2) * upscale, 3]` uint8, 2-pixel
      borders between tiles.
    """
    v1, v2 = augment.two_views(key, jnp.asarray(images), cfg)
    to_u8 = lambda v: np.asarray(jnp.clip(jnp.round(
        (v * augment.STD + augment.MEAN) * 255), 0, 255)).astype(np.uint8)
    rows = [np.asarray(images), to_u8(v1), to_u8(v2)]
    padded = [np.pad(r, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=255) for r in rows]
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in padded], axis=0)
    return grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
