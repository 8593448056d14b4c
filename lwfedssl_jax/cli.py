"""What every entry point shares: flags parsed so that a user's mistake is
answered in one line with exit status 2, and a bug keeps its traceback.

    if __name__ == '__main__':
        _define_flags()
        cli.run(main)

User mistakes are `errors.UserError`s (a `ConfigError` names the key, the
value, what is allowed and the fix), flag-parsing errors (an unknown or
mistyped `--config.a.b=...`, a missing required flag, a config file or
variant argument that does not exist) and Ctrl-C. `--debug` or
`LWFEDSSL_DEBUG=1` shows their traceback too.
"""

import os
import sys

from absl import app, flags
from ml_collections.config_flags import config_flags  # is_config_flag lives here

from lwfedssl_jax.errors import ConfigError, UserError, did_you_mean


DEBUG_ENV = 'LWFEDSSL_DEBUG'
EXIT_USER_ERROR = 2
HELP_FLAGS = ('--help', '-h', '-?', '--helpshort', '--helpfull')

flags.DEFINE_bool('debug', False, 'Show the traceback of user errors too '
                  f'(same as {DEBUG_ENV}=1).')


def debug_enabled(argv=None) -> bool:
    """`--debug` on the command line (read before parsing, which may fail)
    or `LWFEDSSL_DEBUG` set to a non-empty value other than 0."""
    argv = sys.argv if argv is None else argv
    return (any(a in ('--debug', '--debug=true', '--debug=True', '--debug=1')
                for a in argv)
            or os.environ.get(DEBUG_ENV, '') not in ('', '0'))


def run(main, argv=None, default_config: str | None = None) -> None:
    """`absl.app.run(main)`; user errors end in one line each and status 2.

    Args:
      main: the entry point's `main(argv)`.
      argv: the command line (default `sys.argv`).
      default_config: the `--config` used when none is given. Passed here
        rather than as the flag's default because config_flags loads a
        default, and applies the overrides to it, while the flag is defined,
        outside any error handling.
    """
    argv = list(sys.argv if argv is None else argv)
    if default_config and not any(a == '--config' or a.startswith('--config=')
                                  for a in argv[1:]):
        argv.insert(1, f'--config={default_config}')
    sys.argv = argv   # config_flags reads the overrides from sys.argv
    try:
        app.run(main, argv=argv, flags_parser=parse_flags)
    except SystemExit as e:
        # absl ends --help with status 1; asking for help is not a failure.
        if e.code == 1 and any(a in HELP_FLAGS for a in argv[1:]):
            sys.exit(0)
        raise
    except UserError as e:
        if debug_enabled(argv):
            raise
        for line in str(e).splitlines() or ['(no message)']:
            print(f'error: {line}', file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        if debug_enabled(argv):
            raise
        print('interrupted: rerun the same command to resume from the last '
              'checkpoint.', file=sys.stderr)
        sys.exit(130)


def no_positional_args(argv) -> None:
    """Refuses words left after the flags (`main(argv)`'s `argv[1:]`)."""
    if len(argv) > 1:
        raise UserError(f'unexpected arguments {argv[1:]}: every setting is a flag '
                        '(--config.KEY=VALUE for config keys; see --help).')


def parse_flags(argv):
    """`FLAGS(argv)`, translating any parsing failure into a `UserError`."""
    try:
        rest = flags.FLAGS(argv)
        for name in _config_flag_names():   # a config file is loaded lazily:
            list(flags.FLAGS[name].value.keys())   # surface its failure here
        return rest
    except Exception as e:  # noqa: BLE001  (every parse failure is the user's)
        raise _parse_error(e, argv) from e


def _config_flag_names() -> list[str]:
    return [name for name, flag in flags.FLAGS._flags().items()
            if config_flags.is_config_flag(flag)]


def _parse_error(error: Exception, argv) -> UserError:
    """One-line explanation of a flag-parsing failure."""
    unknown = _unknown_override(argv)
    if unknown is not None:
        return unknown
    root = error   # the first exception of the chain (config_flags wraps)
    while not isinstance(root, UserError) and (root.__cause__ or root.__context__):
        root = root.__cause__ or root.__context__
    if isinstance(root, UserError):            # a config file's ConfigError
        return root
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if 'must have a value other than None' in first:
        name = first.split('--', 1)[-1].split('=', 1)[0]
        return UserError(f'--{name} is required (see --help).')
    for name in _config_flag_names():
        if f"flag '{name}." in first:
            return UserError(f'{first}: a --{name}.KEY=VALUE override needs '
                             f'--{name}=FILE.py before it (see --help).')
    if isinstance(error, flags.Error) and 'config file' not in first:
        return UserError(first)                # absl's own: "flag --step=abc: ..."
    if isinstance(root, OSError) and 'Errno 2' in str(root):
        return UserError('config file not found: '
                         + str(root).strip().splitlines()[-1].strip())
    return UserError(f'cannot load the config: {type(root).__name__}: '
                     + (str(root).strip().splitlines() or [''])[0])


def _unknown_override(argv) -> ConfigError | None:
    """The first `--config.a.b=...` whose key the config lacks, if any.

    Reparses the command line without the overrides to get the config's own
    keys, so the suggestion covers every dotted path.
    """
    names = _config_flag_names()
    overrides = [(a, name) for a in argv[1:] for name in names
                 if a.startswith(f'--{name}.')]
    if not overrides:
        return None
    base_argv = [a for a in argv if a not in {o for o, _ in overrides}]
    saved = sys.argv
    sys.argv = base_argv   # config_flags reads the overrides from sys.argv
    try:
        flags.FLAGS(base_argv)
    except Exception:  # noqa: BLE001  (the base itself is bad: reported elsewhere)
        return None
    finally:
        sys.argv = saved
    for arg, name in overrides:
        config = flags.FLAGS[name].value
        key = arg[len(name) + 3:].split('=', 1)[0]
        # Imported here: `compare` uses this module and needs no JAX; only a
        # failed parse pays for the validator's imports.
        from lwfedssl_jax.validation import flat_keys
        valid = list(flat_keys(config))
        if key not in valid and not any(v.startswith(key + '.') for v in valid):
            value = arg.split('=', 1)[1] if '=' in arg else ''
            # Suggest within the key's own subtree first (a backbone's or a
            # method's fields differ from config to config).
            head = key.split('.', 1)[0] + '.'
            siblings = [v for v in valid if v.startswith(head)]
            listed = (f' Keys under {head[:-1]} in this config: {sorted(siblings)}.'
                      if siblings and len(siblings) <= 12 else '')
            return ConfigError(key, value, f'unknown config key (from {arg}).'
                               + (did_you_mean(key, siblings) or did_you_mean(key, valid))
                               + listed,
                               'every key and its default is in configs/common.py.')
    return None
