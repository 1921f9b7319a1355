"""Build the dependency layers for the Lambda platform (no Docker: manylinux wheels).

    python infra/build_layers.py [--arch arm64|x86_64] [--python 3.14]

For each `layers/<name>/requirements.txt`: `pip install --platform manylinux…_<arch>
--python-version <v> --only-binary=:all: --no-deps --target layers/<name>/build/<arch>/python`,
then prune tests, caches and type stubs and strip shared objects. Skipped when the inputs
(requirements, arch, Python version) are unchanged since the last build. Two builds of one
layer at once (parallel test workers) take turns: the second finds the first's result.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("deps", "analysis", "tabular")
MACHINE = {"arm64": "aarch64", "x86_64": "x86_64"}
GLIBC_TAGS = ("manylinux2014", "manylinux_2_28", "manylinux_2_34")
"""Lambda's Amazon Linux 2023 has glibc 2.34: wheels tagged up to manylinux_2_34 run there."""
STRIP = {"arm64": "aarch64-linux-gnu-strip", "x86_64": "strip"}
LAMBDA_UNZIPPED_LIMIT = 262_144_000
"""Bytes of a function's code and layers, unzipped: "250 MB" (MiB) in AWS's words; the batch
function takes all of LAYERS."""
PRUNE_DIRS = {"tests", "test", "__pycache__", "benchmarks"}
PRUNE_SUFFIXES = (".pyi", ".pyc", ".c", ".cpp", ".h", ".pxd", ".pyx")


def build(name: str, arch: str, python: str) -> Path:
    out = ROOT / "layers" / name / "build" / arch
    out.parent.mkdir(parents=True, exist_ok=True)
    with (out.parent / f"{arch}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(name, arch, python, out)


def _build(name: str, arch: str, python: str, out: Path) -> Path:
    req = ROOT / "layers" / name / "requirements.txt"
    stamp = out.parent / f"{arch}.inputs"  # beside the asset, not in it
    digest = hashlib.sha256(req.read_bytes() + f"{arch} {python}".encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return out
    shutil.rmtree(out, ignore_errors=True)
    target = out / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *(f"--platform={tag}_{MACHINE[arch]}" for tag in GLIBC_TAGS),
            "--implementation",
            "cp",
            "--python-version",
            python,
            "--only-binary=:all:",
            "--no-deps",
            "--target",
            str(target),
            "-r",
            str(req),
        ],
        check=True,
    )
    for path in sorted(target.rglob("*"), reverse=True):
        if path.is_dir() and path.name in PRUNE_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.suffix in PRUNE_SUFFIXES:
            path.unlink()
    strip = shutil.which(STRIP[arch])
    if strip:
        for so in target.rglob("*.so*"):
            subprocess.run([strip, "--strip-unneeded", str(so)], capture_output=True)
    stamp.write_text(digest)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="arm64", choices=sorted(MACHINE))
    parser.add_argument("--python", default="3.14")
    args = parser.parse_args()
    sizes = {}
    for name in LAYERS:
        out = build(name, args.arch, args.python)
        sizes[name] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        print(f"{name}: {out} ({sizes[name] / 1e6:.1f} MB)")
    print(
        f"batch function's dependency layers: {sum(sizes.values()) / 1e6:.1f} MB unzipped "
        f"of Lambda's {LAMBDA_UNZIPPED_LIMIT / 1e6:.1f} MB with the code, common layer and model"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
