"""Evaluate a run's checkpoint or an exported encoder under any protocol.

    python -m lwfedssl_jax.evaluate --workdir runs/qs_lw
    python -m lwfedssl_jax.evaluate --workdir runs/qs_lw --protocol finetune --scratch
    python -m lwfedssl_jax.evaluate --encoder enc.npz --dataset tfds:cifar10 --protocol finetune
    python -m lwfedssl_jax.evaluate --workdir runs/qs_lw --protocol knn,finetune \\
        --dataset digits --set eval.finetune.epochs=5 --seed 1

The encoder is a checkpoint's present blocks (`--workdir`, step `--step`,
default the latest) or an exported `.npz` (`--encoder`, `export.py`);
`--scratch` swaps its weights for a random initialisation of the same
backbone and depth (seeded; the paper's Scratch row). `--protocol` (comma
list of `evaluation.PROTOCOLS`: knn, linear_probe, finetune; default the
run's `eval.protocols`) runs on each `--dataset` (repeatable or comma
list, data.source syntax; default the run's `eval.datasets`, else its
pre-training source; required with `--encoder`), at the encoder's image
size. Settings are the run's `config.eval` (with `--encoder`, the defaults
of configs/common.py), changed with `--set eval.KEY=VALUE` (repeatable; also
`data.data_dir`, `data.download`, `data.cache_dir`).

Output (printed, and written to `<workdir, or the encoder's directory>/eval/
<protocols joined by '+'>[_scratch]_step<N>.json`):

    {"protocols": [...], "scratch": bool, "step": N, "seed": int,
     "source": "<workdir or encoder path>", "num_blocks": int,
     "settings": {the eval settings the protocols read},
     "results": {"<dataset source>": {"<protocol>_top1": %, "<protocol>_mean_per_class": %,
                 "<protocol>_macro_precision": %, "<protocol>_macro_recall": %,
                 "<protocol>_macro_f1": %, ..., "train_examples": N, "test_examples": M}}}

`train_examples` counts the dataset's training images (fine-tuning uses
`eval.finetune.train_subset` of them when that is > 0). Run with only
`--workdir` (and `--step`), it also writes `<workdir>/eval_step<N>.json`:
the metrics as training logs them (`evaluation/monitor.py`) with the step,
stage and number of blocks.
"""

import json
import os
import zipfile

import ml_collections
from absl import flags

from lwfedssl_jax import builders, cli, export, platform, run_dir, validation
from lwfedssl_jax.data import sources
from lwfedssl_jax.errors import ConfigError, UserError, did_you_mean
from lwfedssl_jax.evaluation.protocols import PROTOCOLS, run_protocols, short_name
from lwfedssl_jax.utils import rng
from lwfedssl_jax.utils.overrides import typed_like
from lwfedssl_jax.utils.tree import flatten_dict

# `--set` reaches these besides every `eval.` key: where datasets come from.
SET_DATA_KEYS = ('data.data_dir', 'data.download', 'data.cache_dir')
# The settings each protocol reads (reported in the output's `settings`).
_SETTINGS = {'knn': ('batch_size', 'knn_k', 'knn_temperature'),
             'linear_probe': ('batch_size', 'probe_epochs', 'probe_lr', 'probe_batch_size',
                              'probe_weight_decay'),
             'finetune': ('batch_size', 'finetune')}


def check_request(workdir, step, encoder, protocol, datasets, seed, sets) -> tuple:
    """Checks the flags alone (nothing is read): returns `(protocols or None,
    datasets tuple, {key: text} of --set)`.

    Raises:
      UserError / ConfigError: naming the flag.
    """
    if workdir and encoder:
        raise UserError('give --workdir (a run) or --encoder (an exported .npz), not both.')
    if not workdir and not encoder:
        raise UserError('--workdir is required (a run directory written by python -m '
                        'lwfedssl_jax.main), or --encoder FILE.npz with --dataset.')
    if encoder:
        if step is not None:
            raise ConfigError('--step', step, 'applies to --workdir only: an exported '
                              'encoder holds one step.')
        if not os.path.isfile(encoder):
            raise ConfigError('--encoder', encoder, 'is not a file; export one with '
                              'python -m lwfedssl_jax.export --workdir RUN.')
        if not datasets:
            raise ConfigError('--dataset', None, 'is required with --encoder (an exported '
                              'encoder carries no dataset), e.g. --dataset tfds:cifar10.')
    names = None
    if protocol is not None:
        names = tuple(p.strip() for p in protocol.split(',') if p.strip())
        unknown = [p for p in names if p not in PROTOCOLS]
        if not names or unknown or len(set(names)) != len(names):
            raise ConfigError('--protocol', protocol, f'name one or more of {list(PROTOCOLS)}, '
                              'each once, comma-separated.'
                              + (did_you_mean(unknown[0], PROTOCOLS) if unknown else ''))
    split = tuple(s.strip() for arg in datasets or () for s in arg.split(',') if s.strip())
    for source in split:
        try:
            sources.check_source(source)
        except ConfigError as e:
            raise ConfigError('--dataset', source, e.problem, e.fix) from None
        if source.partition(':')[0] in sources.UNLABELLED_KINDS:
            raise ConfigError('--dataset', source, 'has no labels; evaluation needs a '
                              'labelled source.')
    if seed is not None and not 0 <= seed < 2 ** 32:
        raise ConfigError('--seed', seed, 'must be an int in [0, 2^32).')
    assignments = {}
    for item in sets or ():
        key, sep, text = item.partition('=')
        if not sep or not (key.startswith('eval.') or key in SET_DATA_KEYS):
            raise ConfigError('--set', item, f'expects KEY=VALUE with KEY an eval.* key or '
                              f'one of {list(SET_DATA_KEYS)}.')
        assignments[key] = text
    return names, split, assignments


def _apply_sets(config, assignments: dict) -> ml_collections.ConfigDict:
    """`config` with each `--set` KEY=VALUE, typed like the value it replaces."""
    tree = config.to_dict()
    flat = flatten_dict(tree, sep='.')
    for key, text in assignments.items():
        if key not in flat:
            known = [k for k in flat if k.startswith('eval.')] + list(SET_DATA_KEYS)
            raise ConfigError('--set', f'{key}={text}', 'unknown key.'
                              + did_you_mean(key, known), 'every key and its default is '
                              'in configs/common.py.')
        try:
            value = typed_like(text, flat[key])
        except ValueError as e:
            raise ConfigError('--set', f'{key}={text}', f'{e}.') from None
        *groups, name = key.split('.')
        node = tree
        for group in groups:
            node = node[group]
        node[name] = value
    return ml_collections.ConfigDict(tree)


def _base_config(encoder):
    """The defaults of configs/common.py for the backbone of `encoder`."""
    try:
        from configs import common   # the repository's configs: every default lives there
    except ImportError:
        raise UserError('--encoder reads the evaluation defaults from configs/common.py: '
                        'run from the repository root.') from None
    config = common.base()
    config.model = ml_collections.ConfigDict(encoder.config_dict())
    return config


def evaluate(workdir=None, step=None, encoder=None, protocols=None, datasets=(), seed=None,
             scratch=False, assignments=None) -> dict:
    """Runs the protocols; returns the output dict and writes its file.

    Args:
      workdir / step: a run and its checkpoint step (None = latest); or
      encoder: an exported encoder's path (then `datasets` is required).
      protocols: protocol names (None = the config's `eval.protocols`).
      datasets: source strings (empty = `eval.datasets`, else the
        pre-training source).
      seed: the protocols' and the Scratch encoder's seed (None = the
        config's).
      scratch: evaluate a random initialisation of the same backbone instead.
      assignments: `{key: text}` settings (`--set`).

    Returns:
      The output (see the module docstring), plus `_legacy` when only
      `workdir` and `step` were given: the flat metrics as training logs
      them, with the step, stage and number of blocks.
    """
    if workdir:
        config = _apply_sets(run_dir.load_config(workdir), assignments or {})
        validation.check_eval(config)
        _, setup, step, params, meta = run_dir.restore(workdir, step)
        backbone, num_blocks = setup.encoder, setup.plan[meta['stage']].num_blocks
    else:
        try:
            meta = export.read_meta(encoder)
            backbone, params, num_blocks = export.load_encoder(encoder)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise ConfigError('--encoder', encoder, f'is not an exported encoder '
                              f'({type(e).__name__}: {e}); write one with python -m '
                              'lwfedssl_jax.export.') from None
        step = meta.get('step', 0)
        config = _apply_sets(_base_config(backbone), assignments or {})
        validation.check_eval(config)
    # The run's own evaluation, as training logs it: also the flat legacy form.
    own = bool(workdir) and not (protocols or datasets or scratch or assignments
                                 or seed is not None)
    seed = config.seed if seed is None else seed
    names = tuple(protocols or config.eval.protocols)
    datasets = tuple(datasets or config.eval.datasets or (config.data.source,))
    if scratch:
        params = backbone.init(rng.stream(seed, rng.RANDOM_BASELINE))
    settings = config.eval.to_dict()
    results = {}
    for source in datasets:
        dataset = builders.load_source(config, source)
        metrics = run_protocols(names, backbone, params, num_blocks, dataset, settings, seed)
        results[source] = {**metrics, 'train_examples': len(dataset.train_images),
                           'test_examples': len(dataset.test_images)}
    out = {'protocols': list(names), 'scratch': bool(scratch), 'step': int(step),
           'seed': int(seed), 'source': workdir or encoder, 'num_blocks': int(num_blocks),
           'settings': {k: settings[k] for n in names for k in _SETTINGS[n]},
           'results': results}
    folder = os.path.join(workdir or os.path.dirname(os.path.abspath(encoder)), 'eval')
    os.makedirs(folder, exist_ok=True)
    name = '+'.join(names) + ('_scratch' if scratch else '') + f'_step{step}.json'
    with open(os.path.join(folder, name), 'w') as f:
        json.dump(out, f, indent=2)
    if own:
        prefix = (lambda s: f'{short_name(s)}/') if config.eval.datasets else (lambda s: '')
        out['_legacy'] = {'step': step, 'stage': meta['stage'], 'num_blocks': num_blocks,
                          **{prefix(s) + k: v for s, r in results.items() for k, v in r.items()
                             if k not in ('train_examples', 'test_examples')}}
    return out


def evaluate_checkpoint(workdir: str, step: int | None = None) -> dict:
    """The run's own protocols and datasets on a checkpoint (present
    blocks); writes and returns the flat `eval_step<N>.json` content."""
    result = evaluate(workdir, step)['_legacy']
    with open(os.path.join(workdir, f'eval_step{result["step"]}.json'), 'w') as f:
        json.dump(result, f, indent=2)
    return result


def main(argv):
    cli.no_positional_args(argv)
    names, datasets, assignments = check_request(
        _WORKDIR.value, _STEP.value, _ENCODER.value, _PROTOCOL.value, _DATASET.value,
        _SEED.value, _SET.value)
    platform.setup()
    out = evaluate(_WORKDIR.value, _STEP.value, _ENCODER.value, names, datasets,
                   _SEED.value, _SCRATCH.value, assignments)
    legacy = out.pop('_legacy', None)
    if legacy is not None:
        with open(os.path.join(_WORKDIR.value, f'eval_step{legacy["step"]}.json'), 'w') as f:
            json.dump(legacy, f, indent=2)
    print(json.dumps(out, indent=2))


def _define_flags():
    """Command-line flags (defined only when run as a program, so that the
    module can be imported beside other entry points)."""
    global _WORKDIR, _STEP, _ENCODER, _PROTOCOL, _DATASET, _SCRATCH, _SEED, _SET
    _WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.')
    _STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
    _ENCODER = flags.DEFINE_string('encoder', None, 'An exported encoder (.npz) instead of '
                                   '--workdir; needs --dataset.')
    _PROTOCOL = flags.DEFINE_string('protocol', None, 'Comma list of knn, linear_probe, '
                                    "finetune (default: the run's eval.protocols).")
    _DATASET = flags.DEFINE_multi_string('dataset', None, 'Labelled source(s), data.source '
                                         "syntax; repeat or comma-separate (default: the "
                                         "run's eval.datasets, else its pre-training source).")
    _SCRATCH = flags.DEFINE_bool('scratch', False, 'Evaluate a random initialisation of the '
                                 'same backbone and depth (the Scratch row).')
    _SEED = flags.DEFINE_integer('seed', None, "Seed of the protocols and of --scratch "
                                 "(default: the run's config.seed; 0 with --encoder).")
    _SET = flags.DEFINE_multi_string('set', None, 'KEY=VALUE for an eval.* key (e.g. '
                                     'eval.finetune.epochs=5) or data.data_dir / '
                                     'data.download / data.cache_dir; repeatable.')


if __name__ == '__main__':
    _define_flags()
    cli.run(main)
