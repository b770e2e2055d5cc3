"""Markdown front matter as the legacy code read it (gray-matter with js-yaml's safe schema).

`---` on the first line opens a YAML block that runs to the next line starting with `---`;
the rest is the body. YAML follows the 1.2 core rules for booleans (`true`/`false` only), as
js-yaml did, so `enabled: no` stays the string "no".
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from daycare.storage.migrations.legacy.files import LegacyDataError

_BOOL_TAG = "tag:yaml.org,2002:bool"
_COMMENT_LINE = re.compile(r"^\s*#[^\n]+", re.MULTILINE)


class _CoreLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core booleans."""


_CoreLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CoreLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def frontmatter_split(text: str) -> tuple[dict[Any, Any], str]:
    """The front matter (a dict; empty when absent or not a mapping) and the body; raises LegacyDataError."""
    if not text.startswith("---") or text[3:4] == "-":
        return {}, text
    rest = text[3:]
    first_line = rest.split("\n", 1)[0].rstrip("\r")
    language = first_line.strip()
    if language:
        if language.lower() not in ("yaml", "yml"):
            raise LegacyDataError(f"its front matter is in {language!r}, not YAML")
        rest = rest[len(first_line) :]
    close = rest.find("\n---")
    if close == -1:
        block, body = rest, ""
    else:
        block, body = rest[:close], rest[close + 4 :]
        body = body[1:] if body.startswith("\r") else body
        body = body[1:] if body.startswith("\n") else body
    if not _COMMENT_LINE.sub("", block).strip():
        return {}, body
    try:
        data = yaml.load(block, Loader=_CoreLoader)  # a SafeLoader subclass: builds plain values only
    except RecursionError:
        raise LegacyDataError("its front matter is nested too deeply") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise LegacyDataError(f"its front matter is not valid YAML ({problem})") from None
    return (data if isinstance(data, dict) else {}), body
