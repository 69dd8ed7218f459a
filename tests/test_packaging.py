"""The dependencies as declared: lower bounds only, an upper bound only with its reason beside it, and the
known-good versions (constraints/known-good.txt, written by scripts/check-fresh-install --record after a green
run) covering every declared dependency within its bounds, so that a maintainer can reproduce a green run."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
KNOWN_GOOD = ROOT / "constraints" / "known-good.txt"


def declared() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    groups = [project["dependencies"], *project["optional-dependencies"].values()]
    return [Requirement(line) for group in groups for line in group
            if canonicalize_name(Requirement(line).name) != "paperzoo"]


def pins(text: str) -> dict[str, str]:
    """``name==version`` lines (comments and blank lines aside) as {canonical name: version}."""
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"known-good.txt: {line!r} is not 'name==version'"
            found[canonicalize_name(name)] = version.strip()
    return found


def missing_or_outside(requirements: list[Requirement], pinned: dict[str, str]) -> list[str]:
    problems = []
    for req in requirements:
        version = pinned.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name}: not pinned")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} is outside {req.specifier}")
    return problems


def test_known_good_versions_cover_every_declared_dependency():
    problems = missing_or_outside(declared(), pins(KNOWN_GOOD.read_text()))
    assert not problems, ("constraints/known-good.txt is out of step with pyproject.toml "
                          "(rerun scripts/check-fresh-install --record): " + "; ".join(problems))


def test_the_coverage_check_sees_a_missing_or_stale_pin():
    requirements = [Requirement("mkdocs>=1.6,<2"), Requirement("rich>=13")]
    assert missing_or_outside(requirements, {"mkdocs": "1.6.1", "rich": "14.0.0"}) == []
    assert missing_or_outside(requirements, {"mkdocs": "2.0.0", "rich": "14.0.0"}) == [
        "mkdocs==2.0.0 is outside <2,>=1.6"]
    assert missing_or_outside(requirements, {"mkdocs": "1.6.1"}) == ["rich: not pinned"]


def test_every_upper_bound_says_why():
    """An upper bound keeps users off a release; it stands only with the reason in the comment above it."""
    lines = PYPROJECT.read_text().splitlines()
    for number, line in enumerate(lines):
        quoted = re.fullmatch(r'\s*"([^"]+)",?\s*', line)
        if not quoted or "<" not in quoted.group(1).replace("<=", "<"):
            continue
        name = Requirement(quoted.group(1)).name
        comments, above = [], number - 1
        while above >= 0 and lines[above].strip().startswith("#"):
            comments.append(lines[above])
            above -= 1
        assert any(name in c for c in comments) and any(re.search(r"announced|breaks?|drops?", c) for c in comments), (
            f"pyproject.toml line {number + 1}: the upper bound of {name} has no comment above it saying why")


def test_every_data_file_of_the_package_is_declared_package_data():
    """A file the code reads (the cards' index, the spoken digits, the digits classifier, the built-in text) that
    package-data does not name works from a checkout and is missing from a built wheel."""
    package = ROOT / "src" / "paperzoo"
    patterns = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["paperzoo"]
    data = [p.relative_to(package) for p in package.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data, "no data files found: the test looks in the wrong place"
    undeclared = [str(p) for p in data if not any(p.match(pattern) for pattern in patterns)]
    assert not undeclared, f"add to [tool.setuptools.package-data] in pyproject.toml: {undeclared}"
