"""Print the pinned requirement of each named package from pyproject.toml.

Used by the Makefile so the install order can be staged while pyproject.toml stays the one
place where versions are pinned:  python scripts/pins.py torch fbgemm-gpu-cpu  ->  torch==2.13.0 ...
``--rest NAME...`` prints every pinned dependency except the named ones (plus the test extra).
"""

import re
import sys
import tomllib
from pathlib import Path


def _pinned_requirements() -> dict[str, str]:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    pins = {}
    for requirement in requirements:
        name = re.split(r"[=<>!~ ]", requirement, maxsplit=1)[0].lower()
        pins[name] = requirement
    return pins


def main(argv: list[str]) -> None:
    pins = _pinned_requirements()
    if argv and argv[0] == "--rest":
        excluded = {name.lower() for name in argv[1:]}
        print(" ".join(spec for name, spec in pins.items() if name not in excluded))
        return
    missing = [name for name in argv if name.lower() not in pins]
    if missing:
        sys.exit(f"scripts/pins.py: no pinned dependency named {missing} in pyproject.toml")
    print(" ".join(pins[name.lower()] for name in argv))


if __name__ == "__main__":
    main(sys.argv[1:])
