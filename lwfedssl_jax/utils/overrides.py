"""`KEY=VALUE` overrides of a config, typed like the value they replace.

One reading of an override's text for every command that takes one
(`evaluate --set`, the study runner's `--set`, the benchmarks' `--set`):
a bool is true / false / 1 / 0, an int or float is converted, a tuple is a
Python literal (`('a', 'b')`) or a comma list (`a,b`), and anything else
(a string, or a None placeholder such as `data.data_dir`) takes the text.
"""

import ast


def typed_like(text: str, current):
    """`text` as a value of `current`'s type.

    Raises:
      ValueError: `text` cannot be one; the message names the type.
    """
    if isinstance(current, bool):
        if text.lower() not in ('true', 'false', '1', '0'):
            raise ValueError('expects a bool (true, false, 1 or 0)')
        return text.lower() in ('true', '1')
    if isinstance(current, (int, float)):
        try:
            return type(current)(text)
        except ValueError:
            raise ValueError(f'expects a {type(current).__name__}') from None
    if isinstance(current, (tuple, list)):
        if text.strip()[:1] in ('(', '['):
            return tuple(ast.literal_eval(text))
        return tuple(t.strip() for t in text.split(',') if t.strip())
    return text


def set_override(config, key: str, value) -> None:
    """Sets the dotted `key` of `config` (a ConfigDict or nested dict) to
    `value`; a string is typed like the key's current value (`typed_like`),
    any other value is set as it is.

    Raises:
      KeyError: no such key (the message names the level's keys).
      ValueError: the text does not fit the key's type.
    """
    *parents, leaf = key.split('.')
    node = config
    for name in parents:
        if name not in node:
            raise KeyError(f'no key {name!r} in the config (keys here: {sorted(node)})')
        node = node[name]
    if leaf not in node:
        raise KeyError(f'no such key (keys here: {sorted(node)})')
    node[leaf] = typed_like(value, node[leaf]) if isinstance(value, str) else value
