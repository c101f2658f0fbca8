"""YAML files that remember where each value came from, so errors can say ``file:line``.

Loaded with PyYAML's safe loader only (no object construction from tags). JSON Schema
validation errors are mapped back to the line of the offending key or value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import jsonschema
import yaml

from dlp_addon.errors import PolicyError

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class SourceDoc:
    """A parsed YAML document with a line number for every mapping key and sequence item."""

    path: Path
    data: Any
    raw: bytes
    lines: dict[PathKey, int] = field(repr=False)

    def line(self, where: Iterable[str | int]) -> int:
        """Line of ``where`` (1-based); the nearest enclosing node's line when it is absent."""
        key = tuple(where)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), 1)

    def at(self, where: Iterable[str | int], message: str) -> str:
        """``file:line: message`` for a problem at ``where``."""
        return f"{self.path}:{self.line(where)}: {message}"


def _index(node: yaml.Node, here: PathKey, out: dict[PathKey, int]) -> None:
    out.setdefault(here, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            out[(*here, key)] = key_node.start_mark.line + 1
            _index(value_node, (*here, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*here, i), out)


def load_yaml(path: Path) -> SourceDoc:
    """Read and safely parse ``path``; a syntax error becomes a ``PolicyError`` with its line."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PolicyError([f"{path}:1: cannot read file: {e.strerror}"]) from e
    try:
        text = raw.decode("utf-8-sig")
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except UnicodeDecodeError as e:
        raise PolicyError([f"{path}:1: not UTF-8 text"]) from e
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else 1
        raise PolicyError([f"{path}:{line}: YAML syntax error: {e.problem}"]) from e
    except yaml.YAMLError as e:
        raise PolicyError([f"{path}:1: YAML error: {e}"]) from e
    lines: dict[PathKey, int] = {}
    if node is not None:
        _index(node, (), lines)
    return SourceDoc(path=path, data=data, raw=raw, lines=lines)


@dataclass(frozen=True)
class SchemaCheck:
    """The schema's verdict on a document: its problems, and which parts it refused.

    The checks for meaning run on every part the schema did not refuse, so one run reports
    every problem; a refused part is skipped rather than read with the wrong shape (which
    would only add noise). An unknown key refuses nothing: the rest of its object is read."""

    problems: list[str]
    refused: frozenset[PathKey]

    def whole(self, where: Iterable[str | int]) -> bool:
        """Nothing at ``where`` or around it was refused: it has the shape the schema gives."""
        key = tuple(where)
        return not any(key[: len(r)] == r for r in self.refused)

    def usable(self, where: Iterable[str | int]) -> bool:
        """``where`` and everything inside it passed the schema."""
        key = tuple(where)
        return self.whole(key) and not any(r[: len(key)] == key for r in self.refused)


def schema_check(doc: SourceDoc, schema: dict[str, Any]) -> SchemaCheck:
    """Every JSON Schema violation in ``doc`` as ``file:line: message``, in file order, and
    the paths of the values that violate it."""
    validator = jsonschema.Draft202012Validator(schema)
    found: list[tuple[int, str]] = []
    refused: set[PathKey] = set()
    for err in validator.iter_errors(doc.data):
        where = list(err.absolute_path)
        dotted = ".".join(str(p) for p in where) or "(top level)"
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            for key in extra:
                found.append((doc.line([*where, key]), f"{dotted}: unknown key '{key}'"))
            continue
        if err.validator == "required" and isinstance(err.instance, dict):
            missing = [k for k in cast(list[str], err.validator_value) if k not in err.instance]
            refused.update((*where, k) for k in missing)
        else:
            refused.add(tuple(where))
        found.append((doc.line(where), f"{dotted}: {_describe(err)}"))
    found.sort(key=lambda item: item[0])
    return SchemaCheck([f"{doc.path}:{line}: {msg}" for line, msg in found], frozenset(refused))


def entries(data: object, key: str) -> list[tuple[int, dict[str, Any]]]:
    """The mappings listed under ``data[key]``, with their indexes; none when it is no list."""
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def schema_problems(doc: SourceDoc, schema: dict[str, Any]) -> list[str]:
    """Every JSON Schema violation in ``doc`` as ``file:line: message``, in file order."""
    return schema_check(doc, schema).problems


def _describe(err: jsonschema.ValidationError) -> str:
    """A short message that does not echo long values back."""
    if err.validator == "enum":
        return f"must be one of {', '.join(map(str, cast(list[Any], err.validator_value)))}"
    if err.validator == "required":
        return err.message.replace(" is a required property", " is required")
    if err.validator == "type":
        return f"must be of type {err.validator_value}"
    return err.message if len(err.message) < 200 else err.message[:200] + "..."


def load_schema(path: Path) -> dict[str, Any]:
    """Load a JSON Schema shipped in ``dlp_addon/patterns/``."""
    import json

    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result
