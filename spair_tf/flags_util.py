"""absl flags generated from the frozen config dataclasses, for the entry points only.

Every field of a config dataclass becomes a flag of the same name (with an optional prefix),
its default the dataclass default (the paper's value) and its help text the field's entry in
the class docstring's "Attributes:" section, so `--helpfull` documents each hyperparameter
where it is defined. Library code never reads flags; entry points call `config_from_flags`,
and `spair_tf.evaluate` / `spair_tf.export` `adopt_recorded_flags` from a training run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing

from absl import flags


def _attribute_docs(cls) -> dict[str, str]:
    """Field → help text from the "Attributes:" section of a dataclass docstring."""
    doc = cls.__doc__ or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    docs, current = {}, None
    for line in section.splitlines():
        match = re.match(r"^\s{2,}([\w/ ,*]+?):\s*(.*)$", line)
        if match and not line.strip().startswith(("http",)):
            names = [n.strip().rstrip("*") for n in re.split(r"[,/]", match.group(1))]
            current = names
            for name in names:
                docs[name] = match.group(2).strip()
        elif current and line.strip():
            for name in current:
                docs[name] += " " + line.strip()
    return docs


def _help(docs, field) -> str:
    for name, text in docs.items():
        if field.name == name or (name.endswith("_") and field.name.startswith(name)):
            return text
    prefix = [n for n in docs if n and field.name.startswith(n)]
    return docs[max(prefix, key=len)] if prefix else field.name.replace("_", " ")


def _base_type(annotation):
    """(scalar type, is_sequence, optional) for the annotations used by our configs."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"tuple": tuple, "int": int, "float": float,  # noqa: S307
                                       "str": str, "bool": bool, "None": None})
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional, annotation = True, args[0]
        origin = typing.get_origin(annotation)
    if origin is tuple:
        return typing.get_args(annotation)[0], True, optional
    return annotation, False, optional


def define_flags(cls, prefix: str = "", skip=(), flag_values=flags.FLAGS) -> None:
    """Defines one flag per field of dataclass `cls`, named prefix + field name."""
    docs = _attribute_docs(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        name = prefix + field.name
        scalar, sequence, optional = _base_type(field.type)
        default = field.default
        help_text = _help(docs, field) + (" (optional)" if optional else "")
        if sequence:
            values = None if default is None else [str(v) for v in default]
            flags.DEFINE_list(name, values, help_text, flag_values=flag_values)
        elif scalar is bool:
            flags.DEFINE_bool(name, default, help_text, flag_values=flag_values)
        elif scalar is int:
            flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
        elif scalar is float:
            flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, default, help_text, flag_values=flag_values)


def config_from_flags(cls, prefix: str = "", skip=(), flag_values=flags.FLAGS, **overrides):
    """Builds `cls` from the flags `define_flags(cls, prefix)` made (config validation runs)."""
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        value = flag_values[prefix + field.name].value
        scalar, sequence, _ = _base_type(field.type)
        if sequence and value is not None:
            try:
                value = tuple(scalar(v) for v in value)
            except ValueError as error:
                raise ValueError(
                    f"--{prefix + field.name}={','.join(value)}: expected a comma-separated "
                    f"list of {scalar.__name__} values.") from error
        kwargs[field.name] = value
    kwargs.update(overrides)
    return cls(**kwargs)


# Flags about where and how a command runs, never taken from a training run's record.
NOT_INHERITED = frozenset({"model_dir", "output_json", "checkpoint", "export_dir",
                           "max_steps", "patience", "eval_every", "log_every", "strategy"})


def adopt_recorded_flags(model_dir, flag_values=flags.FLAGS):
    """Gives each flag its value from model_dir's training run, unless this command sets it.

    The record is DIR/flags.json (written by `spair_tf.train` once its checkpoint is
    restored or created), else the "flags" of DIR/results.json from runs that predate it.
    Returns the names of the flags taken from the record (none if there is no record).
    """
    records = [(os.path.join(model_dir, name), key)
               for name, key in (("flags.json", None), ("results.json", "flags"))]
    found = [(path, key) for path, key in records if os.path.exists(path)]
    if not found:
        return []
    path, key = found[0]
    try:
        with open(path) as f:
            record = json.load(f)
        record = record if key is None else record.get(key, {})
        if not isinstance(record, dict):
            raise TypeError(f"expected a JSON object, found {type(record).__name__}")
    except (OSError, TypeError, ValueError) as error:
        raise ValueError(f"{path} is unreadable ({error}); delete it and pass the "
                         "training run's --flagfile instead.") from error
    adopted = []
    for name, value in sorted(record.items()):
        if (name not in flag_values or name in NOT_INHERITED or value is None
                or flag_values[name].present):
            continue
        flag_values[name].parse(",".join(map(str, value)) if isinstance(value, list)
                                else str(value))
        adopted.append(name)
    return adopted
