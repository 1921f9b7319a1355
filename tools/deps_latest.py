"""The dependency-change alarm: the suite on the newest releases the ranges allow.

    python tools/deps_latest.py --uv .tools/bin/uv [--report deps-report.md] [-- pytest args]

Builds a throwaway environment (build/deps-latest/, never the locked .venv) from pyproject.toml's
ranges alone (no uv.lock, no [tool.uv] caps), runs the tests there and writes a report: which
packages moved from the lock, which tests broke, and the first error of each. Exit 0 when the
suite passes on the newest releases, 1 when something broke (the report says what), 2 when the
environment could not be built.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from layer_pins import canonical, locked_versions  # noqa: E402

WORK = ROOT / "build" / "deps-latest"


def build_environment(uv: str, venv: Path) -> dict[str, str]:
    """A fresh venv with the newest releases pyproject.toml's ranges allow → package → version."""
    shutil.rmtree(venv, ignore_errors=True)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    subprocess.run([uv, "venv", "--quiet", "--python", "python3", str(venv)], check=True, env=env)
    python = str(venv / "bin" / "python")
    # --no-config: not even [tool.uv]'s caps; only the ranges a user of the package would get.
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--no-config", "--python", python,
         "--resolution", "highest", "-e", f"{ROOT}[dev,bench]"],
        check=True, env=env,
    )
    frozen = subprocess.run(
        [uv, "pip", "list", "--format", "json", "--python", python],
        check=True, env=env, capture_output=True, text=True,
    ).stdout
    return {canonical(p["name"]): p["version"] for p in json.loads(frozen)}


def moved(latest: dict[str, str], lock: dict[str, set[str]]) -> list[tuple[str, str, str]]:
    """(package, locked version(s), newest) for every package whose version is not the lock's."""
    return sorted(
        (name, ", ".join(sorted(lock.get(name, set()))) or "not locked", version)
        for name, version in latest.items()
        if version not in lock.get(name, set()) and name != "avsev"
    )


def failures(junit: Path) -> list[tuple[str, str]]:
    """(test id, first line of its error) of every failed or erroring test in a JUnit report."""
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        for problem in (*case.findall("failure"), *case.findall("error")):
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            test = f"{case.get('classname', '')}::{case.get('name', '')}"
            out.append((test, message[0][:300] if message else "(no message)"))
    return out


def summary(junit: Path) -> dict[str, int]:
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    return {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}


def report(changes: list[tuple[str, str, str]], broken: list[tuple[str, str]],
           counts: dict[str, int], seconds: float) -> str:
    lines = [
        "# Dependency check: the suite on the newest releases",
        "",
        f"Built from pyproject.toml's ranges with no lock and no caps; {counts['tests']} tests in "
        f"{seconds / 60:.1f} min: {counts['failures']} failed, {counts['errors']} errors, "
        f"{counts['skipped']} skipped.",
        "",
        f"## Packages that moved from the lock ({len(changes)})",
        "",
        "| package | lock | newest |",
        "|---|---|---|",
        *(f"| {n} | {old} | {new} |" for n, old, new in changes),
        "",
        f"## Tests that broke ({len(broken)})",
        "",
    ]
    if broken:
        lines += ["| test | first error |", "|---|---|"]
        lines += [f"| `{t}` | {m.replace('|', '/')} |" for t, m in broken]
    else:
        lines.append("None: the lock can move to these releases (`make lock`, then `make test`).")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uv", default=shutil.which("uv") or str(ROOT / ".tools/bin/uv"))
    parser.add_argument("--report", default=str(ROOT / "deps-report.md"))
    parser.add_argument("pytest_args", nargs="*", help="after --: what pytest runs (default all)")
    args = parser.parse_args()
    venv = WORK / "venv"
    try:
        latest = build_environment(args.uv, venv)
    except subprocess.CalledProcessError as e:
        Path(args.report).write_text(f"# Dependency check\n\nThe environment did not build: {e}\n")
        print(f"could not build the newest environment: {e}", file=sys.stderr)
        return 2
    changes = moved(latest, locked_versions())
    junit = WORK / "junit.xml"
    started = time.perf_counter()
    subprocess.run(
        [str(venv / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--junitxml={junit}", *(args.pytest_args or ["tests"])],
        cwd=ROOT, check=False, env={**os.environ, "AVSEV_UNLOCKED": "1"},
    )
    broken = failures(junit)
    text = report(changes, broken, summary(junit), time.perf_counter() - started)
    Path(args.report).write_text(text)
    print(text)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
