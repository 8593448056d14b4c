"""Export a checkpoint's encoder for downstream fine-tuning.

    python -m lwfedssl_jax.export --workdir runs/qs_lw
    python -m lwfedssl_jax.export --workdir runs/qs_lw --step 8 --out encoder.npz

Format (`lwfedssl_jax.encoder.v2`): one uncompressed `.npz` file readable by
plain numpy (so PyTorch or any other framework can load it):

* one array per parameter, keyed by its path in the parameter tree joined
  with '/', e.g. `block_03/attn/query/kernel` ([D, heads, D/heads]) of a
  ViT or `layer2/block1/conv1/kernel` ([3, 3, C_in, C_out]) of a ResNet;
  only the encoder parts that `features` reads (`Backbone.encoder_parts`:
  input parts, the present blocks, shared parts), never the SSL heads nor
  a stage's adapter;
* `__meta__`: a 0-d string array holding JSON: `format`, `model` (the
  `config.model` fields that rebuild the backbone, `name` included),
  `num_blocks` (blocks to run), `step`, `stage`, `mode`.

`load_encoder(path)` returns `(backbone, params, num_blocks)` ready for
`backbone.features(params, images, num_blocks)`, for any registered
backbone; it also reads v1 files (ViT only, learned position embedding).
"""

import json
import os

import jax
import numpy as np
from absl import flags

from lwfedssl_jax import cli, platform, run_dir, validation
from lwfedssl_jax.models import make_backbone
from lwfedssl_jax.utils.tree import flatten_dict, unflatten_dict

FORMAT = 'lwfedssl_jax.encoder.v2'
_FORMAT_V1 = 'lwfedssl_jax.encoder.v1'   # ViT only: meta['vit'], learned positions
_META = '__meta__'


def export_checkpoint(workdir: str, step: int | None = None, out: str | None = None) -> str:
    """Writes the encoder of a checkpoint; returns the file path."""
    if out is not None:
        validation.check_output_file(out, '--out')
    config, setup, step, params, meta = run_dir.restore(workdir, step)
    out = out or os.path.join(workdir, f'encoder_step{step}.npz')
    write_encoder(out, setup.encoder, params, setup.plan[meta['stage']].num_blocks,
                  {'step': step, 'stage': meta['stage'], 'mode': config.mode})
    return out


def write_encoder(path: str, encoder, params: dict, num_blocks: int, info: dict) -> None:
    """Writes `encoder`'s first `num_blocks` blocks (`encoder_parts`) from
    `params` to `path` in this module's format; `info` joins the meta."""
    parts = encoder.encoder_parts(num_blocks)
    flat = {k: np.asarray(v) for k, v in flatten_dict({p: params[p] for p in parts}).items()}
    flat[_META] = np.array(json.dumps({
        'format': FORMAT, 'model': encoder.config_dict(), 'num_blocks': num_blocks, **info}))
    np.savez(path, **flat)


def read_meta(path: str) -> dict:
    """The `__meta__` JSON of an exported encoder (`format`, `model`,
    `num_blocks`, `step`, ...), without loading its arrays."""
    with np.load(path) as data:
        return json.loads(str(data[_META]))


def load_encoder(path: str):
    """Loads an exported encoder: `(backbone, params, num_blocks)`."""
    with np.load(path) as data:
        meta = json.loads(str(data[_META]))
        if meta.get('format') not in (FORMAT, _FORMAT_V1):
            raise ValueError(f'{path} is not an {FORMAT} file (format '
                             f'{meta.get("format")!r}).')
        params = unflatten_dict({k: data[k] for k in data.files if k != _META})
    model = (meta['model'] if meta['format'] == FORMAT
             else {'name': 'vit', **meta['vit'], 'pos_embed': 'learned'})
    return (make_backbone(model), jax.tree.map(jax.numpy.asarray, params),
            meta['num_blocks'])


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
