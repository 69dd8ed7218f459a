"""A Griffe extension for the API reference (mkdocs.yml: mkdocstrings' ``extensions``).

The docstrings document related arguments together, ``norm_eps, norm_momentum: the BatchNorm's ...``, which
Google style has no syntax for: Griffe reads the pair as one parameter that the signature does not have, so the
reference showed it with no type and "required" although both have defaults. Here each such entry becomes one entry
per name, sharing the description, with the type and default of that name in the signature; a family of keywords
(``rpn_*``) becomes the signature's parameters that it matches.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import griffe

# "a, b, c" (a group) or "rpn_*" (a family of keywords): an entry that names several parameters.
_NAMES = re.compile(r"\*{0,2}[A-Za-z_]\w*(\s*,\s*\*{0,2}[A-Za-z_]\w*)+|[A-Za-z_]\w*\*")


def split_grouped_parameters(obj: griffe.Object) -> None:
    """Split the grouped entries of ``obj``'s docstring's parameter sections, in place."""
    if not obj.docstring:
        return
    signature = {p.name: p for p in getattr(obj, "parameters", None) or ()}
    for section in obj.docstring.parsed:
        if section.kind is not griffe.DocstringSectionKind.parameters:
            continue
        entries = []
        for entry in section.value:
            if not _NAMES.fullmatch(entry.name):
                entries.append(entry)
                continue
            names = [n.strip() for n in entry.name.split(",")]
            if entry.name.endswith("*"):
                names = fnmatch.filter(signature, entry.name) or [entry.name]
            for name in names:
                parameter = signature.get(name.lstrip("*"))
                entries.append(griffe.DocstringParameter(
                    name, description=entry.description,
                    annotation=parameter.annotation if parameter else None,
                    value=parameter.default if parameter else None))
        section.value[:] = entries


class SplitGroupedParameters(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        def visit(obj: griffe.Object) -> None:
            split_grouped_parameters(obj)
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)

        visit(pkg)
