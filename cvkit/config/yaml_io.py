"""Safe YAML: data only, no Python objects, no duplicate keys, ``1e-3`` read as a float.

PyYAML's safe loader already refuses tags that construct Python objects; this module turns
that refusal into an ``UnsafeYamlError`` naming the file and line, and adds two checks that
keep anything a user wrote from being lost: a key written twice in one mapping is an error
(PyYAML keeps the last silently), and YAML 1.1's rule that ``1e-3`` is a string is replaced by
the number a user means.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from cvkit.errors import ConfigFileError, UnsafeYamlError


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            first = seen[key].start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} appears twice in one mapping (first on line {first}); "
                "a second value would silently replace the first",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def loads(text: str, name: str = "<string>") -> Any:
    """Parse YAML text as plain data. Errors name ``name`` and the line."""
    try:
        loader = _Loader(text)  # a SafeLoader: plain data only
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line = f"line {mark.line + 1}" if mark else "unknown line"
        if "could not determine a constructor" in str(exc.problem):
            tag = str(exc.problem).split("tag ")[-1]
            raise UnsafeYamlError(
                f"the YAML tag {tag} would construct a Python object; "
                "configs are data and never execute code",
                where=f"{name}, {line}",
                hints=["remove the tag and write the value as plain YAML data"],
            ) from None
        raise ConfigFileError(str(exc.problem), where=f"{name}, {line}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark else "unknown line"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigFileError(
            f"not valid YAML: {problem}", where=f"{name}, {line}", hints=["check the indentation"]
        ) from None


def load_file(path: Path) -> Any:
    """Read and parse one YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigFileError(
            f"config file {str(path)!r} is a folder; give the .yaml file in it"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigFileError(
            f"config file {str(path)!r} is not UTF-8 text (byte {exc.start}): a config is a "
            "YAML text file; is this the right file?"
        ) from None
    except OSError as exc:
        raise ConfigFileError(
            f"cannot read config file {str(path)!r}: {exc.strerror or exc}"
        ) from None
    return loads(text, str(path))


def dumps(data: Any) -> str:
    """Write plain data as YAML, keys in their order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
