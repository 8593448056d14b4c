"""The exceptions that mean "the user asked for something that cannot work".

Entry points (`cli.run`) print these as one line each and exit with status 2,
without a traceback; any other exception is a bug and keeps its traceback.
Library code raises them wherever a value that came from the config or the
command line is refused, so a mistake caught deep inside (a registry entry's
keyword argument, a data source) reads the same as one caught up front by
`validation.check_config`.
"""

import difflib


class UserError(Exception):
    """A mistake in what the user asked for (a flag, a path, a run directory)."""


class ConfigError(UserError, ValueError):
    """A config key whose value cannot work.

    Also a `ValueError`, so library callers that catch `ValueError` still do.

    Attributes:
      key: dotted config path (`fl.batch_size`) or flag (`--workdir`).
      value: the refused value.
      problem: what is wrong and what is allowed.
      fix: how to fix it (optional).
    """

    def __init__(self, key: str, value, problem: str, fix: str | None = None):
        self.key, self.value, self.problem, self.fix = key, value, problem, fix
        shown = repr(value.to_dict() if hasattr(value, 'to_dict') else value)
        super().__init__(f'{key}={" ".join(shown.split())}: {problem}'
                         + (f' Fix: {fix}' if fix else ''))


class ConfigErrors(UserError, ValueError):
    """Several `ConfigError`s found together (one line each)."""

    def __init__(self, errors: list):
        self.errors = list(errors)
        super().__init__('\n'.join(str(e) for e in self.errors))


def did_you_mean(name: str, choices) -> str:
    """' Did you mean X?' for the choice nearest to `name`, or ''.

    Matches whole dotted paths and also their last component, so that
    `batch_size` finds `fl.batch_size`.
    """
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    if not close:
        tail = str(name).rsplit('.', 1)[-1]
        by_tail = {c.rsplit('.', 1)[-1]: c for c in choices}
        hit = difflib.get_close_matches(tail, list(by_tail), n=1, cutoff=0.75)
        close = [by_tail[hit[0]]] if hit else []
    return f' Did you mean {close[0]!r}?' if close else ''


class RunDirError(UserError, ValueError):
    """A run directory that cannot serve the request: not a run directory,
    no such checkpoint, or a config that differs from the saved run's."""
