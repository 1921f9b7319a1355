"""The Lambda layers' pins (`layers/*/requirements.txt`) and the lock (`uv.lock`) agree.

    python tools/layer_pins.py           # exit 1 and list each pin that differs from the lock
    python tools/layer_pins.py --write   # set every pin to the lock's version (`make lock`)

The layers carry, for the Lambda platform, the versions the test environment ran: one lock, one
version of each package, whichever of the two installs it.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")


def canonical(name: str) -> str:
    """PEP 503 normalised name: `Python_Dateutil` and `python-dateutil` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path = ROOT / "uv.lock") -> dict[str, set[str]]:
    """Package → the versions the lock holds (one, unless the lock forks by environment)."""
    out: dict[str, set[str]] = {}
    for package in tomllib.loads(lock.read_text())["package"]:
        if "version" in package:
            out.setdefault(canonical(package["name"]), set()).add(package["version"])
    return out


def layer_pins(root: Path = ROOT) -> list[tuple[Path, int, str, str]]:
    """(requirements file, line number, package, pinned version) of every layer pin."""
    pins = []
    for req in sorted((root / "layers").glob("*/requirements.txt")):
        for number, line in enumerate(req.read_text().splitlines(), 1):
            match = PIN.match(line.strip())
            if match:
                pins.append((req, number, canonical(match["name"]), match["version"]))
    return pins


def disagreements(root: Path = ROOT) -> list[str]:
    lock = locked_versions(root / "uv.lock")
    out = []
    for req, number, name, version in layer_pins(root):
        held = lock.get(name, set())
        if held != {version}:
            where = req.relative_to(root)
            out.append(f"{where}:{number}: {name}=={version}, the lock has {sorted(held) or 'none'}")
    return out


def write(root: Path = ROOT) -> int:
    lock = locked_versions(root / "uv.lock")
    changed = 0
    for req in sorted((root / "layers").glob("*/requirements.txt")):
        lines = req.read_text().splitlines(keepends=True)
        for i, line in enumerate(lines):
            match = PIN.match(line.strip())
            if not match:
                continue
            held = lock.get(canonical(match["name"]), set())
            if len(held) != 1:
                raise SystemExit(f"{req}: {match['name']} is in the lock {len(held)} times: {held}")
            (version,) = held
            if version != match["version"]:
                lines[i] = line.replace(f"=={match['version']}", f"=={version}", 1)
                changed += 1
        req.write_text("".join(lines))
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="set the pins to the lock's versions")
    args = parser.parse_args()
    if args.write:
        print(f"{write()} layer pins updated to the lock")
        return 0
    problems = disagreements()
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
