"""One place that checks a run config before anything is loaded or compiled.

Every entry point calls `check_config(config)` first (and `train.run` and
`resources.predict` call it again for library users), so a mistake is
reported within seconds as a `ConfigError` naming the key, the value, what
is allowed and how to fix it. The checks, in order:

1. **Keys**: every key of the config is known (`RULES`, or a registry entry
   under `algorithms.` / `aggregators.`) and every known key is present;
   an unknown key gets the nearest valid one as a suggestion.
2. **Type and range of every key** (`RULES`): ints are ints (not bools),
   floats accept ints, probabilities lie in [0, 1], learning rates,
   temperatures and epsilons are > 0, counts are >= 1, choices are checked
   against their registry (`ssl.METHODS`, `algorithms.ALGORITHMS`, ...).
3. **Relations between keys** (`_relations`): clients per round vs clients,
   chunked execution vs chunk size, mesh devices vs devices present (all
   of them in a multi-process run), the data source's form (and a `folder:` path on disk).
4. **The pieces own the rest**, so each rule lives once: the backbone's
   fields (`models.make_backbone`: keys and types, then e.g.
   `ViTConfig.validate`: sizes, image vs patch, width vs heads), the
   augmentation (`augment.validate_config`: probabilities, ranges), the
   stage plan (blocks per stage vs depth, rounds vs stages, local parts), the
   SSL method's, algorithm's and aggregator's own keyword arguments and the
   server optimiser, all built here once without data (`builders.build`).

`check_client_data(config, sizes, num_train)` adds what needs the client
partition (known only once the data is read, still before compiling):
batch size vs the smallest client, kNN neighbours vs the training set.
"""

import dataclasses
import math
import os
from typing import Callable, Sequence

import ml_collections
import numpy as np

from lwfedssl_jax import builders, sharding, ssl, stages
from lwfedssl_jax.data import augment, partition, randaugment, sources
from lwfedssl_jax.errors import ConfigError, ConfigErrors, RunDirError, did_you_mean
from lwfedssl_jax.evaluation import finetune, protocols
from lwfedssl_jax.federated import addons, aggregate, algorithms, client, execution
from lwfedssl_jax.models import MODELS, make_backbone
from lwfedssl_jax.models.backbone import REMAT_POLICIES


@dataclasses.dataclass(frozen=True)
class Rule:
    """Type and range of one config key.

    Attributes:
      kind: 'int', 'float', 'bool', 'str', 'opt_str' (str or None), 'pair'
        (two floats), 'names' (a tuple of strings).
      lo, hi: bounds (None = open-ended); `lo_open` / `hi_open` exclude them.
      choices: a function giving the allowed values (a registry's keys).
      also: a value allowed besides the range (e.g. -1 = all devices).
    """
    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: Callable[[], Sequence[str]] | None = None
    also: object = None

    def allowed(self) -> str:
        """What is allowed, in words."""
        if self.choices is not None:
            return f'one of {list(self.choices())}'
        what = {'int': 'an int', 'float': 'a number', 'bool': 'True or False',
                'str': 'a string', 'opt_str': 'a string or None',
                'pair': 'a pair of numbers', 'names': 'a tuple of names'}[self.kind]
        show = lambda x: f'{x:,}' if isinstance(x, int) else f'{x:g}'
        bounds = []
        if self.lo is not None:
            bounds.append(f'{">" if self.lo_open else ">="} {show(self.lo)}')
        if self.hi is not None:
            bounds.append(f'{"<" if self.hi_open else "<="} {show(self.hi)}')
        extra = '' if self.also is None else f' (or {self.also})'
        return what + (' ' + ' and '.join(bounds) if bounds else '') + extra

    def problem(self, value) -> str | None:
        """None if `value` is allowed, else what is wrong."""
        if self.also is not None and value == self.also:
            return None
        ok = {
            'int': lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool),
            'float': lambda v: (isinstance(v, (int, float, np.number))
                                and not isinstance(v, bool) and math.isfinite(v)),
            'bool': lambda v: isinstance(v, (bool, np.bool_)),
            'str': lambda v: isinstance(v, str) and v != '',
            'opt_str': lambda v: v is None or isinstance(v, str),
            'pair': lambda v: (isinstance(v, (tuple, list)) and len(v) == 2
                               and all(isinstance(x, (int, float)) for x in v)),
            'names': lambda v: (isinstance(v, (tuple, list))
                                and all(isinstance(x, str) for x in v)),
        }[self.kind]
        if not ok(value):
            return f'must be {self.allowed()}.'
        if self.choices is not None and value not in self.choices():
            return f'unknown; choices: {list(self.choices())}.' + did_you_mean(
                value, self.choices())
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return f'must be {self.allowed()}.'
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return f'must be {self.allowed()}.'
        return None


def _int(lo=None, hi=None, **kw):
    return Rule('int', lo, hi, **kw)


def _float(lo=None, hi=None, **kw):
    return Rule('float', lo, hi, **kw)


def _choice(fn):
    return Rule('str', choices=fn)


_BOOL, _STR, _OPT_STR = Rule('bool'), Rule('str'), Rule('opt_str')
_POSITIVE = _float(0, lo_open=True)                    # learning rates, temperatures
_NONNEG = _float(0)                                     # weight decays, jitter strengths
_PROB = _float(0, 1)
_BETA = _float(0, 1, hi_open=True)                      # Adam betas, momenta
_SEED = _int(0, 2**32 - 1)                              # jax.random keys take uint32

# Every fixed key of a run config (configs/common.py builds them all). The
# subtrees `ssl.kwargs`, `algorithms.<name>` and `aggregators.<name>` hold a
# registry entry's keyword arguments: their entry checks them when built.
RULES: dict[str, Rule] = {
    'seed': _SEED,
    'mode': _choice(lambda: stages.MODES),
    'blocks_per_stage': _int(1),
    # The backbone's other fields are its own (`models/backbone.py`).
    'model.name': _choice(lambda: sorted(MODELS)),
    'model.image_size': _int(1),
    'ssl.name': _choice(lambda: sorted(ssl.METHODS)),
    'data.source': _STR,
    'data.data_dir': _OPT_STR,
    'data.download': _BOOL,
    'data.cache_dir': _OPT_STR,
    'data.partition': _choice(lambda: sorted(partition.PARTITIONERS)),
    'data.dirichlet_alpha': _POSITIVE,
    'data.partition_seed': _SEED,
    'data.synthetic_train': _int(1),
    'data.synthetic_test': _int(1),
    'data.public_size': _int(0),
    'data.public_base_epochs': _int(1),
    # Types only: ranges are augment.validate_config's.
    **{f'augment.{k}': Rule({tuple: 'pair', bool: 'bool', int: 'int'}.get(type(v), 'float'))
       for k, v in augment.AugmentConfig()._asdict().items()},
    'fl.num_clients': _int(1),
    'fl.clients_per_round': _int(1),
    'fl.local_epochs': _int(1),
    'fl.batch_size': _int(2),           # contrastive losses need 2 examples
    'fl.total_rounds': _int(1),
    'fl.client_execution': _choice(lambda: execution.EXECUTIONS),
    'fl.client_chunk': _int(0),
    'fl.memory_budget_gib': _float(0),
    'fl.mesh_devices': _int(1, also=-1),
    'fl.algorithm': _choice(lambda: sorted(algorithms.ALGORITHMS)),
    'fl.local_parts': Rule('names'),
    'fl.addons': Rule('names'),
    'fl.dropout': _float(0, 1, hi_open=True),
    'fl.depth_dropout': _float(0, 1, hi_open=True),
    'server.aggregator': _choice(lambda: sorted(aggregate.AGGREGATORS)),
    'server.optimizer': _choice(lambda: list(aggregate.SERVER_OPTIMIZERS)),
    'server.learning_rate': _POSITIVE,
    'server.momentum': _BETA,
    'server.b1': _BETA,
    'server.b2': _BETA,
    'server.eps': _POSITIVE,
    'optim.base_lr': _POSITIVE,
    'optim.weight_decay': _NONNEG,
    'optim.b1': _BETA,
    'optim.b2': _BETA,
    'optim.compute_dtype': _choice(lambda: client.COMPUTE_DTYPES),
    'optim.remat': _choice(lambda: REMAT_POLICIES),
    'optim.views_in_turn': _BOOL,
    'eval.at_stage_end': _BOOL,
    'eval.random_baseline': _BOOL,
    'eval.batch_size': _int(1),
    'eval.knn_k': _int(1),
    'eval.knn_temperature': _POSITIVE,
    'eval.probe_epochs': _int(1),
    'eval.probe_lr': _POSITIVE,
    'eval.probe_batch_size': _int(1),
    'eval.probe_weight_decay': _NONNEG,
    # Names and sources are checked by `eval_relations` (registry, source form).
    'eval.protocols': Rule('names'),
    'eval.datasets': Rule('names'),
    'eval.finetune.epochs': _int(1),
    'eval.finetune.warmup_epochs': _int(0),
    'eval.finetune.batch_size': _int(1),
    'eval.finetune.learning_rate': _POSITIVE,
    'eval.finetune.weight_decay': _NONNEG,
    'eval.finetune.randaugment_ops': _int(0),
    'eval.finetune.randaugment_magnitude': _int(0, randaugment.NUM_BINS - 1),
    'eval.finetune.train_subset': _int(0),
    'checkpoint.enabled': _BOOL,
    'checkpoint.every_rounds': _int(1),
    'checkpoint.keep': _int(1),
    'checkpoint.allow_safe_changes': _BOOL,
    'accounting.examples_per_client': _int(0),
    'accounting.outdir': _STR,
    'log.progress': _BOOL,
    'log.step_flops': _choice(lambda: builders.STEP_FLOPS_CHOICES),
}
# Subtrees whose keys are a registry's entries, each holding its kwargs.
REGISTRY_SUBTREES = {'algorithms': lambda: algorithms.ALGORITHMS,
                     'aggregators': lambda: aggregate.AGGREGATORS,
                     'addons': lambda: addons.ADDONS}
# The method's kwargs and the backbone's fields: checked by the method and
# by `models.make_backbone`.
_OPEN_SUBTREES = ('ssl.kwargs.', 'model.')


def flat_keys(config, prefix: str = '') -> dict:
    """`{dotted key: value}` of every leaf (an empty sub-dict is a leaf)."""
    out = {}
    for k, v in config.items():
        path = f'{prefix}{k}'
        if hasattr(v, 'items') and len(v):
            out.update(flat_keys(v, path + '.'))
        else:
            out[path] = v
    return out


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises `ConfigErrors` (one line per mistake) unless `config` can run."""
    errors = _key_errors(config)
    if not errors:
        values = flat_keys(config)
        for key, rule in RULES.items():
            problem = rule.problem(values[key])
            if problem:
                errors.append(ConfigError(key, values[key], problem))
    if not errors:
        errors = _relations(config)
    if not errors:
        try:   # the pieces' own checks: model, augmentation, plan, registries
            augment.validate_config(augment.AugmentConfig(**config.augment))
            builders.build(config)
        except ConfigError as e:
            errors.append(e)
    if errors:
        raise ConfigErrors(errors)


def _key_errors(config) -> list:
    """Unknown and missing keys."""
    values = flat_keys(config)
    errors = []
    for key in values:
        head, _, rest = key.partition('.')
        if key in RULES or key.startswith(_OPEN_SUBTREES):
            continue
        if head in REGISTRY_SUBTREES:
            entry = rest.split('.', 1)[0]
            if entry in REGISTRY_SUBTREES[head]():
                continue
            errors.append(ConfigError(key, values[key], f'{entry!r} is not an entry of '
                                      f'{head}: {sorted(REGISTRY_SUBTREES[head]())}.'
                                      + did_you_mean(entry, REGISTRY_SUBTREES[head]())))
            continue
        errors.append(ConfigError(key, values[key], 'unknown config key.'
                                  + did_you_mean(key, RULES),
                                  'every key and its default is in configs/common.py.'))
    for key in RULES:
        if key not in values:
            errors.append(ConfigError(key, None, 'missing from the config.',
                                      'build configs from configs/common.base().'))
    return errors


def _relations(config) -> list:
    """Checks that involve two keys or the machine (each key already valid)."""
    fl, errors = config.fl, []
    if fl.clients_per_round > fl.num_clients:
        errors.append(ConfigError('fl.clients_per_round', fl.clients_per_round,
                                  f'must be <= fl.num_clients={fl.num_clients}.'))
    unknown = [a for a in fl.addons if a not in addons.ADDONS]
    if unknown or len(set(fl.addons)) != len(fl.addons):
        what = f'{unknown[0]!r} is unknown' if unknown else 'an add-on is repeated'
        errors.append(ConfigError('fl.addons', tuple(fl.addons), f'{what}; allowed: each '
                                  f'of {sorted(addons.ADDONS)} at most once.'
                                  + (did_you_mean(unknown[0], addons.ADDONS) if unknown
                                     else '')))
    if fl.depth_dropout > 0 and config.mode == 'e2e':
        errors.append(ConfigError(
            'fl.depth_dropout', fl.depth_dropout, 'drops the blocks of earlier stages, and '
            'mode=e2e has one stage; use mode=layerwise or progressive.'))
    encoder = _collect(errors, make_backbone, config.model.to_dict())
    if encoder is not None and fl.depth_dropout > 0 and not encoder.blocks_keep_shape:
        errors.append(ConfigError(
            'fl.depth_dropout', fl.depth_dropout, f'skips blocks, but the blocks of '
            f'model.name={encoder.name!r} change the activation shape; use 0.'))
    _collect(errors, execution.check_execution, fl.client_execution, fl.client_chunk,
             fl.memory_budget_gib)
    # Any K runs on any mesh: the round pads K to a multiple of its size.
    _collect(errors, sharding.mesh_size, fl.mesh_devices)
    if config.data.public_size and config.data.public_size < 2:
        errors.append(ConfigError('data.public_size', config.data.public_size,
                                  'a public set needs at least 2 images (0 = none).'))
    # The form of data.source and what can be checked on disk without reading
    # data; tfds names and file contents are checked when the data is read.
    _collect(errors, sources.check_source, config.data.source)
    if config.data.source.partition(':')[0] in sources.UNLABELLED_KINDS:
        _collect(errors, sources.check_unlabelled_use, config.data.source,
                 config.data.partition, tuple(config.eval.datasets))
    return errors + eval_relations(config.eval)


def check_eval(config) -> None:
    """Raises `ConfigErrors` unless `config.eval` can run: the rules of its
    keys, then `eval_relations` (the `evaluate` entry point's check of the
    evaluation settings it was given; `check_config` runs the same)."""
    values = flat_keys(config.eval, 'eval.')
    errors = []
    for key, rule in RULES.items():
        if key.startswith('eval.'):
            problem = ('missing from the config.' if key not in values
                       else rule.problem(values[key]))
            if problem:
                errors.append(ConfigError(key, values.get(key), problem))
    if not errors:
        errors = eval_relations(config.eval)
    if errors:
        raise ConfigErrors(errors)


def eval_relations(e) -> list:
    """The evaluation keys' checks beyond type and range: protocol names,
    source strings (`sources.check_source`), fine-tuning settings
    (`finetune.check_settings`: warm-up vs epochs, ...)."""
    errors = []
    names = list(e.protocols)
    unknown = [n for n in names if n not in protocols.PROTOCOLS]
    if not names or unknown or len(set(names)) != len(names):
        what = (f'{unknown[0]!r} is unknown' if unknown else 'a protocol is repeated'
                if names else 'no protocol is named')
        errors.append(ConfigError('eval.protocols', tuple(names), f'{what}; allowed: one '
                                  f'or more of {list(protocols.PROTOCOLS)}, each once.'
                                  + (did_you_mean(unknown[0], protocols.PROTOCOLS)
                                     if unknown else '')))
    for source in e.datasets:
        try:
            sources.check_source(source)
        except ConfigError as err:
            errors.append(ConfigError('eval.datasets', tuple(e.datasets),
                                      f'{source!r}: {err.problem}', err.fix))
            continue
        if source.partition(':')[0] in sources.UNLABELLED_KINDS:
            errors.append(ConfigError('eval.datasets', tuple(e.datasets), f'{source!r} has '
                                      'no labels; evaluation needs labelled sources.'))
    short = [protocols.short_name(s) for s in e.datasets]
    if len(set(short)) != len(short):
        errors.append(ConfigError('eval.datasets', tuple(e.datasets), f'two sources share '
                                  f'a short name ({short}), so their metric keys would '
                                  'collide; evaluate them in separate runs.'))
    _collect(errors, finetune.check_settings, finetune.FinetuneSettings(**e.finetune))
    return errors


def _collect(errors: list, check, *args):
    """`check(*args)`'s result, or None with its `ConfigError` appended to
    `errors` (the pieces own their rules; the validator gathers them)."""
    try:
        return check(*args)
    except ConfigError as e:
        errors.append(e)
        return None


def check_client_data(config, sizes, num_train: int | None = None) -> None:
    """Checks that need the partition (`sizes`: `[N]` examples per client;
    `num_train`: training images, None = not known, as in `resources`)."""
    errors = []
    smallest = int(np.min(sizes))
    if config.fl.batch_size > smallest:
        errors.append(ConfigError(
            'fl.batch_size', config.fl.batch_size,
            f'larger than the smallest client ({smallest} examples, data '
            f'{config.data.source}, {len(sizes)} clients): each batch would repeat '
            "images, so a contrastive batch's negatives would be copies of its positives.",
            f'use --config.fl.batch_size={_largest_power_of_two(smallest)} (<= {smallest}), '
            'or fewer clients.'))
    if num_train is not None and config.eval.knn_k > num_train:
        errors.append(ConfigError('eval.knn_k', config.eval.knn_k,
                                  f'exceeds the {num_train} training images.'))
    if errors:
        raise ConfigErrors(errors)


def _largest_power_of_two(n: int) -> int:
    return 2 ** int(math.log2(max(n, 2)))


def check_workdir(path: str | None, flag: str = '--workdir') -> str:
    """Refuses an output directory that cannot be one (before any work)."""
    if not path:
        raise ConfigError(flag, path, 'is required: the directory for the run\'s outputs.')
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(flag, path, 'exists and is not a directory.',
                          'pick a directory path (it is created if needed).')
    existing = os.path.abspath(path)
    while not os.path.exists(existing):    # the nearest ancestor that exists
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
        raise ConfigError(flag, path, f'cannot be created or written ({existing} is '
                          'not a writable directory).')
    return path


def check_output_file(path: str, flag: str) -> str:
    """Refuses a file path that cannot be written (a directory, or a parent
    that is a file or not writable)."""
    if os.path.isdir(path):
        raise ConfigError(flag, path, 'is a directory; give a file path.')
    try:
        check_workdir(os.path.dirname(os.path.abspath(path)), flag)
    except ConfigError as e:
        raise ConfigError(flag, path, f'its directory cannot be used: {e.problem}') from None
    return path


def check_run_dir(path: str | None, flag: str = '--workdir') -> str:
    """Refuses a path that is not a training run's directory."""
    if not path:
        raise ConfigError(flag, path, 'is required: a run directory written by '
                          'python -m lwfedssl_jax.main.')
    if not os.path.isdir(path):
        raise ConfigError(flag, path, 'is not a directory.')
    if not os.path.exists(os.path.join(path, 'config.json')):
        raise RunDirError(f'{flag}={path!r}: no config.json there, so not a run '
                          'directory (python -m lwfedssl_jax.main --workdir ... writes one).')
    return path
