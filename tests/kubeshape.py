"""Kubernetes objects checked against the API's OpenAPI types, as the official client generates them.

The client's models carry, per kind, every field's JSON name and type and which are required.
A field the API does not know would be dropped by the server without a word; here it fails.
"""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes.client
from kubernetes.client import ApiClient

LIST = re.compile(r"^[Ll]ist\[(.+)\]$")
# The client writes maps as dict(str, T) in some releases and dict[str, T] in others.
DICT = re.compile(r"^(?:dict\(str, (.+)\)|[Dd]ict\[str, (.+)\])$")
# Times travel as RFC 3339 strings.
SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str}


def unknown_fields(value: Any, kind: str, path: str = "") -> list[str]:
    """Paths of fields that the type `kind` (e.g. V1DaemonSet) does not have, or of the wrong type."""
    if value is None:  # the API prints an unset optional field as null (an event's timestamps)
        return []
    if match := LIST.match(kind):
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        return [e for i, item in enumerate(value) for e in unknown_fields(item, match.group(1), f"{path}[{i}]")]
    if match := DICT.match(kind):
        if not isinstance(value, dict):
            return [f"{path}: not a map"]
        inner = match.group(1) or match.group(2)
        return [e for k, item in value.items() for e in unknown_fields(item, inner, f"{path}.{k}")]
    if kind in SCALARS:
        return [] if isinstance(value, SCALARS[kind]) else [f"{path}: not {kind}: {value!r}"]
    if kind == "object":  # IntOrString, Quantity, free-form
        return []
    model = getattr(kubernetes.client, kind)
    if not isinstance(value, dict):
        return [f"{path}: not a {kind} object"]
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: not a field of {kind}")
        else:
            errors.extend(unknown_fields(item, model.openapi_types[by_json[key]], f"{path}.{key}"))
    return errors


def check(obj: dict[str, Any], kind: str) -> None:
    """Raise if a field is unknown or mistyped, or (the client's own check) a required one is missing."""
    errors = unknown_fields(obj, kind)
    if errors:
        raise ValueError("; ".join(errors))
    ApiClient().deserialize(_Response(json.dumps(obj)), kind)


class _Response:
    """What ApiClient.deserialize reads of an HTTP response (kubernetes 36's signature)."""

    def __init__(self, data: str) -> None:
        self.data = data
