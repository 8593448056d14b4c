"""Export a checkpoint's encoder for downstream fine-tuning.

    python -m lwfedssl_jax.export --workdir runs/qs_lw
    python -m lwfedssl_jax.export --workdir runs/qs_lw --step 8 --out encoder.npz

Format (`lwfedssl_jax.encoder.v1`): one uncompressed `.npz` file readable by
plain numpy (so PyTorch or any other framework can load it):

* one array per parameter, keyed by its path in the parameter tree joined
  with '/', e.g. `block_03/attn/query/kernel` ([D, heads, D/heads]) or
  `embed/patch/kernel` ([p, p, 3, D]); only the encoder's present parts
  (`embed`, `block_00`..., `norm`), never the SSL heads;
* `__meta__`: a 0-d string array holding JSON: `format`, `vit` (the
  `ViTConfig` fields), `num_blocks` (blocks to run), `step`, `stage`,
  `mode`.

`load_encoder(path)` returns `(ViTEncoder, params, num_blocks)` ready for
`encoder.features(params, images, num_blocks)`.
"""

import json
import os

import jax
import numpy as np
from absl import flags

from lwfedssl_jax import cli, platform, run_dir, validation
from lwfedssl_jax.models.vit import EMBED, NORM, ViTConfig, ViTEncoder
from lwfedssl_jax.utils.tree import flatten_dict, unflatten_dict

FORMAT = 'lwfedssl_jax.encoder.v1'
_META = '__meta__'


def export_checkpoint(workdir: str, step: int | None = None, out: str | None = None) -> str:
    """Writes the encoder of a checkpoint; returns the file path."""
    if out is not None:
        validation.check_output_file(out, '--out')
    config, setup, step, params, meta = run_dir.restore(workdir, step)
    num_blocks = setup.plan[meta['stage']].num_blocks
    parts = [p for p in setup.encoder.part_names() if p in params]
    assert parts[0] == EMBED and parts[-1] == NORM, parts
    flat = {k: np.asarray(v) for k, v in flatten_dict({p: params[p] for p in parts}).items()}
    flat[_META] = np.array(json.dumps({
        'format': FORMAT, 'vit': setup.encoder.cfg._asdict(), 'num_blocks': num_blocks,
        'step': step, 'stage': meta['stage'], 'mode': config.mode}))
    out = out or os.path.join(workdir, f'encoder_step{step}.npz')
    np.savez(out, **flat)
    return out


def load_encoder(path: str):
    """Loads an exported encoder: `(ViTEncoder, params, num_blocks)`."""
    with np.load(path) as data:
        meta = json.loads(str(data[_META]))
        if meta.get('format') != FORMAT:
            raise ValueError(f'{path} is not an {FORMAT} file (format '
                             f'{meta.get("format")!r}).')
        params = unflatten_dict({k: data[k] for k in data.files if k != _META})
    encoder = ViTEncoder(ViTConfig(**meta['vit']))
    return encoder, jax.tree.map(jax.numpy.asarray, params), meta['num_blocks']


def main(argv):
    cli.no_positional_args(argv)
    platform.setup()
    path = export_checkpoint(_WORKDIR.value, _STEP.value, _OUT.value)
    print(f'Encoder written to {path}')


def _define_flags():
    """Command-line flags (defined only when run as a program, so that the
    module can be imported beside other entry points)."""
    global _WORKDIR, _STEP, _OUT
    _WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.', required=True)
    _STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
    _OUT = flags.DEFINE_string('out', None, 'Output .npz (default: '
                               '<workdir>/encoder_step<N>.npz).')


if __name__ == '__main__':
    _define_flags()
    cli.run(main)
