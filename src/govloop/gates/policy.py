"""Gate policies as code: a YAML file validated into a frozen pydantic model.

A policy names the models it applies to and a list of rules::

    name: quality
    models: ["iris-*"]          # fnmatch patterns; default: every model
    rules:
      - kind: min_samples       # too little data is inconclusive, never pass
        metric: count
        value: 200
      - name: accuracy-floor
        metric: accuracy
        op: ">="
        value: 0.85
      - metric: latency_p95_ms
        op: "<="
        value: 250
        severity: warn          # a violated warn rule makes the gate warn, not fail
      - kind: regression        # no significant drop against the baseline
        metric: accuracy
        margin: 0.01

The rule kinds are in :mod:`govloop.gates.rules`; :func:`policy_json_schema` is
the JSON Schema of the format (``govloop gate schema`` prints it).
Errors name the file, line and field of the problem (:class:`PolicyError`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from govloop.errors import PolicyError
from govloop.gates.rules import KINDS, AnyRule, Rule

__all__ = [
    "Policy",
    "Rule",
    "load_policies",
    "load_policy",
    "parse_policy",
    "policy_json_schema",
]


class Policy(BaseModel):
    """A named list of rules, for the models whose names match ``models``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    models: list[str] = Field(default_factory=lambda: ["*"])
    baseline: str | None = Field(
        default=None,
        min_length=1,
        description="Online gates: the stored baseline (NAME or NAME@VERSION, see "
        "`govloop baseline set`) that regression rules compare each window with.",
    )
    baseline_last: int | None = Field(
        default=None, ge=1, description="Pool the last N versions of `baseline`."
    )
    rules: list[AnyRule] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _distinct_names(cls, rules: list[AnyRule]) -> list[AnyRule]:
        # results name their rule, and combine() looks each rule's kind up by name
        names = [r.name for r in rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two rules share the name {', '.join(map(repr, duplicates))}")
        return rules

    def canonical(self) -> dict[str, Any]:
        """The policy as plain data, as hashed: optional settings that are unset are left
        out, so adding one to govloop does not change the hash of policies without it."""
        body = self.model_dump(mode="json")
        for key in ("baseline", "baseline_last"):
            if body[key] is None:
                del body[key]
        for rule in body["rules"]:
            if rule.get("kind") == "regression" and rule["higher_is_better"] is None:
                del rule["higher_is_better"]
        return body

    @property
    def content_hash(self) -> str:
        """SHA-256 of the policy's canonical JSON: equal policies, equal hashes."""
        canonical = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def applies_to(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at pydantic location ``loc`` (or of its nearest parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if getattr(k, "value", None) == part]
            if not match:
                break
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _public_loc(loc: tuple[int | str, ...], error_type: str) -> tuple[int | str, ...]:
    """The location as the YAML spells it: without pydantic's union tag, ``kind`` named."""
    if len(loc) >= 3 and loc[0] == "rules" and isinstance(loc[1], int) and loc[2] in KINDS:
        loc = loc[:2] + loc[3:]
    if error_type == "invalid_kind":
        loc = (*loc, "kind")
    return loc


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file (draft 2020-12), for editors and CI linters.

    >>> schema = policy_json_schema()
    >>> schema["title"], sorted(schema["properties"])
    ('Policy', ['baseline', 'baseline_last', 'description', 'models', 'name', 'rules'])
    """
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://govloop.dev/schemas/policy.json"
    return schema


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate YAML text into a :class:`Policy`; errors name the line and the field.

    >>> parse_policy("name: q\\nrules:\\n  - metric: accuracy\\n    value: 0.9\\n").rules[0].name
    'accuracy >= 0.9'
    >>> parse_policy("name: q\\nrules:\\n  - metric: accuracy\\n    op: '=>'\\n    value: 1\\n")
    Traceback (most recent call last):
    ...
    govloop.errors.PolicyError: <policy>:4: rules.0.op: Input should be '>=', '>', ...'!='
    """
    try:
        node = yaml.compose(text)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"{where}: not valid YAML: {problem}") from exc
    if not isinstance(data, dict):
        where = f"{source}:{node.start_mark.line + 1}" if node is not None else source
        raise PolicyError(f"{where}: a policy is a YAML mapping with 'name' and 'rules'")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _public_loc(tuple(err["loc"]), err["type"])
            where = ".".join(str(p) for p in loc) or "policy"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{source}:{_line_of(node, loc)}: {where}: {msg}")
        raise PolicyError("\n".join(problems)) from exc


def decode_policy(data: bytes, source: str = "<policy>") -> str:
    """The text of a policy file; a file that is not UTF-8 is named with the line of its
    first bad byte.

    >>> decode_policy(b"name: q\\nrules: \\xff\\n", "p.yaml")
    Traceback (most recent call last):
    ...
    govloop.errors.PolicyError: p.yaml:2: not UTF-8 text (byte 0xff at column 8)
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        raise PolicyError(
            f"{source}:{line}: not UTF-8 text (byte 0x{byte:02x} at column "
            f"{exc.start - line_start + 1})"
        ) from exc


def load_policy(path: Path) -> Policy:
    """Read and validate one policy file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc.strerror}") from exc
    return parse_policy(decode_policy(data, str(path)), source=str(path))


def load_policies(spec: str) -> list[Policy]:
    """Policies from a comma-separated list of files and directories (``*.yaml``, ``*.yml``)."""
    policies: list[Policy] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        path = Path(part)
        if path.is_dir():
            files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            policies.extend(load_policy(f) for f in files)
        else:
            policies.append(load_policy(path))
    names = [p.name for p in policies]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PolicyError(f"two policies share the name {', '.join(duplicates)}")
    return policies
