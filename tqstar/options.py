"""Options defined once: a config is a dataclass whose fields carry their help text, and these helpers
turn it into CLI flags, read it from text (flags, config files, eval method strings, model names, request
fields) and check its values. Every text → option conversion goes through ``coerce``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import MISSING, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .jsonl import write_json

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: JSON config files only
    tomllib = None

#: Text that unsets an optional option ('eos' reads naturally for a horizon).
UNSET_WORDS = ("none", "null", "eos")
#: The lowest temperature other than 0 (greedy): log-probs divided by less overflow to -inf, and sampling
#: from them gives NaN. Below it sampling is greedy in all but name anyway.
MIN_TEMPERATURE = 0.01
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def option(default, help: str, **extra):
    """A dataclass field carrying its CLI help text."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@lru_cache(maxsize=None)
def kinds_of(cls) -> dict[str, tuple[str, ...]]:
    """Each field's kinds from its annotation: ``int | None`` → ``("int", "None")``."""
    return {f.name: tuple(str(f.type).replace(" ", "").split("|")) for f in fields(cls)}


def coerce(cls, name: str, value):
    """The value of option ``name`` of config class ``cls`` from ``value``: text is parsed by the field's
    kind ('none'/'null'/'eos' unset an optional field; booleans are true/false/1/0; '2.0' is a whole
    number), other values are checked as they are. Raises ``ConfigError`` whose message starts with the
    option name. NaN and ±inf pass: the configs refuse them, and callers may answer them differently."""
    kinds = kinds_of(cls).get(name)
    if kinds is None:
        raise ConfigError(f"Unknown option {name!r}. Options: {', '.join(kinds_of(cls))}.")
    if isinstance(value, str) and "str" not in kinds:
        value = _parse(name, kinds, value)
    return _checked(name, kinds, value, finite=False)


def _parse(name: str, kinds: tuple[str, ...], text: str):
    lowered = text.strip().lower()
    if "None" in kinds and lowered in UNSET_WORDS:
        return None
    if "bool" in kinds:
        if lowered not in _BOOLEANS:
            raise ConfigError(f"{name} must be true or false, got {text!r}.")
        return _BOOLEANS[lowered]
    if "int" in kinds or "float" in kinds:
        try:
            return int(lowered) if "int" in kinds and lowered.lstrip("+-").isdigit() else float(lowered)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {text!r}.") from None
    return text


def _checked(name: str, kinds: tuple[str, ...], value, finite: bool = True):
    """``value`` if it is of the field's kind (whole-number floats become ints), else ``ConfigError``."""
    if value is None and "None" in kinds:
        return None
    if "bool" in kinds:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}.")
    elif "int" in kinds:
        return _whole_number(name, value, finite)
    elif "float" in kinds:
        _require_number(name, value, finite)
    elif "str" in kinds and not isinstance(value, str):
        raise ConfigError(f"{name} must be text, got {value!r}.")
    elif "list[str]" in kinds and not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
        raise ConfigError(f"{name} must be a list of text, got {value!r}. Write e.g. [\"greedy\", \"tq-direct\"].")
    return value


def check_field_types(config) -> None:
    """Refuse a value of the wrong kind for any field of a config dataclass: NaN or ±inf for a number,
    a fraction for an integer, a number for text, anything but true/false for a switch. Whole-number
    floats (2.0 from a JSON file) become ints. Every config calls this first in ``__post_init__``, so
    the CLI, config files, eval method strings and server fields share one check."""
    for name, kinds in kinds_of(type(config)).items():
        checked = _checked(name, kinds, getattr(config, name))
        if checked is not getattr(config, name):
            object.__setattr__(config, name, checked)  # frozen configs too


def _require_number(name: str, value, finite: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}.")
    if finite and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}. Pass a number such as 1.0.")


def _whole_number(name: str, value, finite: bool = True) -> int:
    _require_number(name, value, finite)
    if isinstance(value, float) and math.isfinite(value):
        if not value.is_integer():
            raise ConfigError(f"{name} must be a whole number, got {value!r}. Pass e.g. {math.floor(value)}.")
        return int(value)
    return value


def check_choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"Unknown {name} {value!r}. Use one of: {', '.join(choices)}.")


def at_least(name: str, value, lowest) -> None:
    """Refuse a number below ``lowest``, naming the option and the fix."""
    _require_number(name, value)
    if value < lowest:
        raise ConfigError(f"{name} must be ≥ {lowest}, got {value}. Set {name} to {lowest} or more.")


def at_most(name: str, value, highest, why: str) -> None:
    """Refuse a number above ``highest``, naming the bound, why it exists and the fix."""
    _require_number(name, value)
    if value > highest:
        raise ConfigError(f"{name} must be ≤ {highest} ({why}), got {value}. Set {name} to {highest} or less.")


def between(name: str, value, lowest, highest, why: str) -> None:
    at_least(name, value, lowest)
    at_most(name, value, highest, why)


def temperature(name: str, value, greedy: bool = True) -> None:
    """Refuse a temperature that sampling cannot use: negative, or so small that logits overflow.
    ``greedy``: 0 is allowed and means the argmax."""
    _require_number(name, value)
    zero = "0 (greedy) or " if greedy else ""
    if (value == 0 and greedy) or value >= MIN_TEMPERATURE:
        return
    fix = f"Use 0 for greedy decoding or a temperature ≥ {MIN_TEMPERATURE}." if greedy else (
        f"Use a temperature ≥ {MIN_TEMPERATURE}, or selection='greedy' for the argmax.")
    raise ConfigError(f"{name} must be {zero}≥ {MIN_TEMPERATURE}, got {value!r}. {fix}")


def positive(name: str, value, fix: str) -> None:
    """Refuse a number that is not strictly positive, naming the option and the fix."""
    _require_number(name, value)
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}. {fix}")


def defaults(cls) -> dict[str, Any]:
    return {f.name: (f.default if f.default is not MISSING else f.default_factory()) for f in fields(cls)}


def build(values: dict[str, Any], *classes) -> tuple:
    """One instance of each config class from one flat mapping (a key fills every class that has it),
    refusing keys no class has."""
    names = [set(kinds_of(cls)) for cls in classes]
    unknown = sorted(set(values) - set().union(*names))
    if unknown:
        raise ConfigError(f"Unknown option(s): {', '.join(unknown)}. See the command's --help for the names.")
    try:
        return tuple(cls(**{k: v for k, v in values.items() if k in known}) for cls, known in zip(classes, names))
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc


def from_args(namespace: argparse.Namespace, *classes, base: dict[str, Any] | None = None) -> tuple:
    """The configs ``classes`` from parsed flags (the ones given) over ``base`` (e.g. a config file)."""
    known = set().union(*(kinds_of(cls) for cls in classes))
    given = {k: v for k, v in vars(namespace).items() if k in known}
    return build({**(base or {}), **given}, *classes)


def add_flags(parser: argparse.ArgumentParser, *classes) -> None:
    """One flag per field of each config class, with the field's help text; unset flags stay absent."""
    for cls in classes:
        group = parser.add_argument_group(cls.__name__, (cls.__doc__ or "").strip())
        for f in fields(cls):
            # a list's flag may be named for one item ('flag'): --judge-reward X fills judge_rewards
            flag, help_text = f.metadata.get("flag") or "--" + f.name.replace("_", "-"), f.metadata.get("help", "")
            if kinds_of(cls)[f.name] == ("bool",):
                group.add_argument(flag, action="store_true", default=argparse.SUPPRESS,
                                   help=f"{help_text} (default: {f.default})")
            elif str(f.type).startswith("list"):
                group.add_argument(flag, action="append", default=argparse.SUPPRESS, dest=f.name,
                                   metavar=flag[2:].replace("-", "_").upper(), help=f"{help_text} (repeatable)")
            else:
                extra = {"choices": f.metadata["choices"]} if "choices" in f.metadata else {}
                group.add_argument(flag, type=_flag_type(cls, f.name), default=argparse.SUPPRESS,
                                   metavar=f.name.upper(), help=f"{help_text} (default: {f.default})", **extra)


def _flag_type(cls, name: str):
    def convert(text: str):
        try:
            return coerce(cls, name, text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name  # argparse names the type in its messages
    return convert


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read option values from a JSON or TOML file: one object (table) of flat keys named like the options."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist. Check the path.")
    if path.suffix == ".toml" and tomllib is None:
        raise ConfigError(f"Config file {str(path)!r} is TOML, which needs Python 3.11 or newer. Use a JSON file.")
    kind = "TOML" if path.suffix == ".toml" else "JSON"
    try:
        text = path.read_text(encoding="utf-8")
        # NaN and Infinity pass here (Python's json reads them) so that the option holding one is named
        values = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Config file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}). "
                          "Save it as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"Config file {str(path)!r} cannot be read ({exc.strerror or exc}). Check its "
                          "permissions.") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"Config file {str(path)!r} is not valid {kind}: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"Config file {str(path)!r} holds a JSON {type(values).__name__}, not an object of "
                          'options. Write e.g. {"top_k": 5, "alpha": 2.0}.')
    return values


def writable_file(path: str | Path, flag: str) -> None:
    """Refuse an output file that cannot be written (its folder missing, a folder in its place), before the
    work whose result it would hold."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is a directory. Name a file in it, e.g. {str(path / 'out.jsonl')!r}.")
    if not path.parent.is_dir():
        raise ConfigError(f"{flag} {str(path)!r}: the folder {str(path.parent)!r} does not exist. Create it or "
                          "name a file in an existing folder.")


def writable_dir(path: str | Path, flag: str) -> Path:
    """``path`` as an existing directory (created when missing) that files can be written in, or
    ``ConfigError`` saying why it cannot be, at start rather than at the first write."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is a file, not a directory. Pass a new directory name.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{flag} {str(path)!r} cannot be created ({exc.strerror or exc}). Pass a directory "
                          "you can write to.") from None
    if not os.access(path, os.W_OK | os.X_OK):  # read-only: by its permissions or its file system
        raise ConfigError(f"{flag} {str(path)!r} is not writable. Pass a directory you can write to, or give "
                          "this user write permission on it.")
    return path


def claim_run(out: Path, options: dict[str, Any], what: str, config_class=None) -> None:
    """Keep the options a resumable run started with in ``out/run.json``, and refuse to resume it with
    others: its pairs or checkpoints would then mix two setups. An option ``config_class`` has but the run's
    record lacks was added since the run started, which therefore ran with its default."""
    path = Path(out) / "run.json"
    if not path.is_file():
        write_json(path, options)
        return
    started = {**(defaults(config_class) if config_class else {}), **json.loads(path.read_text())}
    changed = [f"--{k.replace('_', '-')} {started.get(k)!r} (now {v!r})" for k, v in options.items() if started.get(k) != v]
    if changed:
        raise ConfigError(f"{out} holds {what} started with {', '.join(changed)}; resuming it would mix two setups. "
                          "Repeat the original options to resume, or pass a new --output.")
