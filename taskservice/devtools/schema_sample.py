"""Deterministic JSON values that validate against a JSON Schema: the structured output of the fake LLM.

Standard library only; covers the subset of JSON Schema that OpenAI's structured outputs accept.
"""

from __future__ import annotations

import math
from typing import Any, cast

__all__ = ["generate"]


def generate(
    schema: dict[str, Any], *, overrides: dict[str, Any] | None = None, root: dict[str, Any] | None = None
) -> Any:
    """A deterministic value that validates against ``schema`` (the JSON Schema subset used by OpenAI).

    Choices: objects get every property; arrays get 2 items clamped to minItems/maxItems; the n-th array
    item (n=1 outside arrays) takes the n-th enum value (cycling) or the string ``"Sample <name> <n>."``
    padded/truncated to minLength/maxLength (``format`` date/date-time/email/uri/uuid get a fitting
    constant); integers/numbers take the midpoint of minimum..maximum (integers floored, so 50 for
    0..100 and 0.5 for 0..1), or 42 clamped to a single bound; booleans are ``true``.
    ``anyOf``/``oneOf``/type lists take the first non-null branch. ``overrides`` maps a property name
    to a value used verbatim (the ``[[rating=NN]]`` directive). ``pattern`` is not honoured.
    """
    return _Generator(root or schema, overrides or {}).value(schema, "value", 1)


class _Generator:
    def __init__(self, root: dict[str, Any], overrides: dict[str, Any]) -> None:
        self.root = root
        self.overrides = overrides

    def resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        node: Any = self.root
        for token in [t for t in ref[1:].split("/") if t]:
            node = node[token.replace("~1", "/").replace("~0", "~")]
        return cast(dict[str, Any], node)

    def value(self, schema: dict[str, Any], name: str, index: int, depth: int = 0) -> Any:
        if depth > 32:
            raise ValueError("schema nesting too deep (recursive $ref?)")
        if "$ref" in schema:
            merged = {**self.resolve(schema["$ref"]), **{k: v for k, v in schema.items() if k != "$ref"}}
            return self.value(merged, name, index, depth + 1)
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part["$ref"]) if "$ref" in part else part
                for key, val in part.items():
                    if key == "properties":
                        merged["properties"] = {**merged.get("properties", {}), **val}
                    elif key == "required":
                        merged["required"] = [*merged.get("required", []), *val]
                    else:
                        merged.setdefault(key, val)
            return self.value(merged, name, index, depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
                return self.value(options[0], name, index, depth + 1)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            choices = [c for c in schema["enum"] if c is not None] or schema["enum"]
            return choices[(index - 1) % len(choices)]
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if kind == "object":
            props: dict[str, Any] = schema.get("properties", {})
            return {
                key: self.overrides[key] if key in self.overrides else self.value(sub, key, index, depth + 1)
                for key, sub in props.items()
            }
        if kind == "array":
            return self.array(schema, name, depth)
        if kind == "string":
            return self.string(schema, name, index)
        if kind in ("integer", "number"):
            return self.number(schema, integer=kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        raise ValueError(f"unsupported schema type {kind!r}")

    def array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        count = max(2, int(schema.get("minItems", 0)))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        prefix: list[dict[str, Any]] = schema.get("prefixItems", [])
        items = schema.get("items")
        item_schema: dict[str, Any] = items if isinstance(items, dict) else {}
        out: list[Any] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else item_schema
            out.append(self.value(sub, f"{name} item", i + 1, depth + 1))
        return out

    @staticmethod
    def string(schema: dict[str, Any], name: str, index: int) -> str:
        fixed = {
            "date-time": "2024-01-01T00:00:00Z",
            "date": "2024-01-01",
            "time": "00:00:00",
            "email": f"user{index}@example.com",
            "uri": f"https://example.com/{index}",
            "uuid": f"00000000-0000-4000-8000-{index:012d}",
        }
        text = fixed.get(str(schema.get("format")), f"Sample {name.replace('_', ' ')} {index}.")
        min_len, max_len = int(schema.get("minLength", 0)), schema.get("maxLength")
        if len(text) < min_len:
            text += "x" * (min_len - len(text))
        if max_len is not None:
            text = text[: int(max_len)]
        return text

    @staticmethod
    def number(schema: dict[str, Any], *, integer: bool) -> int | float:
        lo: float | None = schema.get("minimum")
        hi: float | None = schema.get("maximum")
        step = 1 if integer else 1e-6
        if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
            lo = schema["exclusiveMinimum"] + step
        if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
            hi = schema["exclusiveMaximum"] - step
        if lo is not None and hi is not None:
            value: float = (lo + hi) / 2
        else:
            value = 42
            if lo is not None:
                value = max(value, lo)
            if hi is not None:
                value = min(value, hi)
        if integer:
            value = math.floor(value)
            if lo is not None and value < lo:
                value = math.ceil(lo)
            return int(value)
        return value
