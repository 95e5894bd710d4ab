"""Colab's published package versions as pins: colab/requirements-cpu.txt, refreshed.

Google publishes what its Colab runtime ships in the repository googlecolab/backend-info:
`pip-freeze.txt` (the CPU runtime's `pip freeze`) and `os-info.txt` (its Python).
`make colab-check` builds an environment from the book's pins file, which lists what the
chapters and the executor need, at those versions. This module rewrites that file's
versions (and its Source, Date and Python lines) from a newer freeze:

    python -m booktools.colab_pins --repo path/to/backend-info      # a git clone of it
    python -m booktools.colab_pins --freeze pip-freeze.txt --commit SHA --date 2026-08-19

The pins file keeps its packages, order and comments; only versions and the header change.
A pinned package that the freeze no longer lists is an error, never silently dropped.
``--python-version`` prints the pins' Python as major.minor (for CI to set up that Python).

Standard library only, so it runs with any Python 3.11+.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

PINS_FILE = Path(__file__).resolve().parent.parent / "colab" / "requirements-cpu.txt"
BACKEND_INFO = "https://github.com/googlecolab/backend-info"

# `name==version`, optionally followed by a comment.
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s#]+)(?P<rest>\s*(#.*)?)$")
# `name @ url` (a direct reference, as pip freeze writes packages installed from a URL).
_DIRECT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*@\s*(?P<url>\S+)$")
# The version in a wheel or sdist file name: name-version-...whl / name-version.tar.gz.
_ARCHIVE_VERSION = re.compile(r"^[A-Za-z0-9_.]+?-(?P<version>\d[^-]*?)(?:-.*\.whl|\.tar\.gz|\.zip)$")
_HEADER = re.compile(r"^# (?P<key>Source|Date|Python): (?P<value>.*)$")


def canonical(name: str) -> str:
    """A package name as pip compares them (PEP 503): case and -_. runs do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def public_version(version: str) -> str:
    """The version without a local label: `2.11.0+cpu` and `2.11.0+cu128` are torch 2.11.0."""
    return version.split("+", 1)[0]


def parse_freeze(text: str) -> dict[str, str | None]:
    """Map each package of a `pip freeze` listing (canonical name) to its public version.

    A package installed from a URL (`torch @ https://.../torch-2.11.0%2Bcpu-cp313-...whl`)
    gets the version in its file name; one from a VCS (`x @ git+https://...@commit`) has no
    version to read and maps to None. A line of neither form raises ValueError naming it.
    """
    versions: dict[str, str | None] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if pin := _PIN.match(line):
            versions[canonical(pin["name"])] = public_version(pin["version"])
        elif direct := _DIRECT.match(line):
            file_name = unquote(direct["url"].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1])
            archive = _ARCHIVE_VERSION.match(file_name)
            versions[canonical(direct["name"])] = (
                public_version(archive["version"]) if archive and not direct["url"].startswith("git+")
                else None
            )
        else:
            raise ValueError(f"line {number} of the freeze is not `name==version` or `name @ url`: {raw!r}")
    return versions


def parse_pins(text: str) -> dict[str, str]:
    """The pins file's packages as {name as written: version}; raises on a line it cannot read."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pin = _PIN.match(line)
        if pin is None:
            raise ValueError(f"line {number} of the pins file is not `name==version`: {raw!r}")
        pins[pin["name"]] = pin["version"]
    return pins


def pins_header(text: str) -> dict[str, str]:
    """The header lines `# Source: ...`, `# Date: ...`, `# Python: ...` as a dict."""
    return {m["key"]: m["value"].strip() for line in text.splitlines() if (m := _HEADER.match(line))}


def python_minor(text: str) -> str:
    """The pins' Python as major.minor (`# Python: 3.13.15` gives `3.13`)."""
    version = pins_header(text).get("Python")
    if not version or not re.match(r"^\d+\.\d+", version):
        raise ValueError("the pins file has no `# Python: X.Y...` line")
    return ".".join(version.split(".")[:2])


@dataclass(frozen=True)
class Source:
    """Where a freeze comes from: a commit of googlecolab/backend-info and its date."""

    commit: str
    date: str  # YYYY-MM-DD
    python: str | None = None  # Colab's Python (os-info.txt), e.g. 3.13.15

    @property
    def url(self) -> str:
        return f"{BACKEND_INFO}/blob/{self.commit}/pip-freeze.txt"


def refresh(pins_text: str, freeze_text: str, source: Source) -> tuple[str, list[str]]:
    """Return the pins file rewritten at the freeze's versions, and the changes as lines.

    Raises ValueError when a pinned package is missing from the freeze or has no version
    there, or when the pins file lacks its Source or Date header line.
    """
    freeze = parse_freeze(freeze_text)
    pins = parse_pins(pins_text)
    missing = [name for name in pins if canonical(name) not in freeze]
    unversioned = [name for name in pins if canonical(name) in freeze and freeze[canonical(name)] is None]
    if missing or unversioned:
        problems = []
        if missing:
            problems.append(f"not in the freeze: {', '.join(missing)}")
        if unversioned:
            problems.append(f"installed from a URL with no version in the freeze: {', '.join(unversioned)}")
        raise ValueError("cannot pin every package at Colab's version; " + "; ".join(problems))
    header = pins_header(pins_text)
    for key in ("Source", "Date"):
        if key not in header:
            raise ValueError(f"the pins file has no `# {key}: ...` header line to update")

    changes = []
    lines = []
    for line in pins_text.splitlines():
        if pin := _PIN.match(line.strip()):
            new = freeze[canonical(pin["name"])]
            if new != pin["version"]:
                changes.append(f"{pin['name']} {pin['version']} -> {new}")
            line = f"{pin['name']}=={new}{pin['rest']}"
        elif head := _HEADER.match(line):
            value = {"Source": source.url, "Date": source.date,
                     "Python": source.python or head["value"].strip()}[head["key"]]
            line = f"# {head['key']}: {value}"
        lines.append(line)
    return "\n".join(lines) + "\n", changes


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def read_backend_info(repo: Path) -> tuple[str, Source]:
    """pip-freeze.txt from a git clone of backend-info, at the last commit that changed it.

    Python comes from os-info.txt at that commit (its `Python 3.13.15` line), when present.
    """
    commit, date = _git(repo, "log", "-1", "--format=%H %cs", "HEAD", "--", "pip-freeze.txt").split()
    freeze = _git(repo, "show", f"{commit}:pip-freeze.txt")
    python = None
    try:
        os_info = _git(repo, "show", f"{commit}:os-info.txt")
    except subprocess.CalledProcessError:
        os_info = ""
    if match := re.search(r"^Python (\d+\.\d+\.\d+)", os_info, re.M):
        python = match[1]
    return freeze, Source(commit=commit, date=date, python=python)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pins", type=Path, default=PINS_FILE, help="the pins file to rewrite")
    parser.add_argument("--repo", type=Path, help="a git clone of googlecolab/backend-info")
    parser.add_argument("--freeze", type=Path, help="a saved pip-freeze.txt (with --commit, --date)")
    parser.add_argument("--commit", help="the backend-info commit the saved freeze is from")
    parser.add_argument("--date", help="that commit's date, YYYY-MM-DD")
    parser.add_argument("--python", help="Colab's Python version (os-info.txt), e.g. 3.13.15")
    parser.add_argument("--python-version", action="store_true",
                        help="only print the pins' Python as major.minor")
    args = parser.parse_args(argv)

    pins_text = args.pins.read_text(encoding="utf-8")
    if args.python_version:
        print(python_minor(pins_text))
        return 0
    if args.repo is not None:
        freeze_text, source = read_backend_info(args.repo)
    elif args.freeze is not None and args.commit and args.date:
        freeze_text = args.freeze.read_text(encoding="utf-8")
        source = Source(commit=args.commit, date=args.date, python=args.python)
    else:
        parser.error("give --repo, or --freeze with --commit and --date")
    try:
        new_text, changes = refresh(pins_text, freeze_text, source)
    except ValueError as error:
        print(f"{args.pins}: {error}", file=sys.stderr)
        return 1
    args.pins.write_text(new_text, encoding="utf-8")
    print(f"{args.pins}: pins from {source.url} ({source.date})")
    for change in changes or ["no version changed"]:
        print(f"  {change}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
