"""`cdk synth` for the local stack, without the CDK CLI (so without `npx`): the app command of
cdk.json run in a subprocess as the CLI runs it, with `CDK_OUTDIR` (where the app writes the
cloud assembly) and `CDK_CONTEXT_JSON` (cdk.json's context, then cdk.context.json's, then the
given context: stage, arch = this machine's, bundle, and any `-c key=value`).

The app needs the dependency layers built for the architecture: `infra/build_layers.py` is run
first (it does nothing when its stamps say the layers are current).

Synths are cached: the same context and the same inputs (cdk.json, infra/, functions/, the
library, the layers' requirements and stamps, the bundle's files) give the same template, so
a second stack with the same bundles starts without synthesizing again. All synths share one
output folder, where the CDK stages each asset once by its hash (the dependency layers are
~200 MB); each synth's template and asset manifest are then copied to a folder of their own
(the asset paths made absolute), which `Assembly.read` takes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
"""The repository (tools/avsev_tools/local → root)."""
CACHE = Path(os.environ.get("AVSEV_SYNTH_CACHE", Path.home() / ".cache" / "avsev" / "synth"))
KEEP = 20
"""Cached assemblies kept (the newest; each is a template and a manifest, ~0.3 MB)."""
LAYERS = ("deps", "analysis", "tabular")
INPUTS = ("cdk.json", "cdk.context.json", "infra", "functions", "layers/common/python")


class SynthError(RuntimeError):
    """The CDK app failed; the message ends with its output."""


@dataclass(frozen=True)
class Synth:
    folder: Path
    """The cloud assembly to read (Assembly.read(folder, stack))."""
    stack: str
    seconds: float
    """Wall time of this call (the app's run, or the cache look-up)."""
    cached: bool


def host_arch() -> str:
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"


def stack_name(stage: str) -> str:
    from avsev.constants import SERVICE

    return f"{SERVICE}-{stage}"


def cdk_context(root: Path = ROOT) -> dict[str, Any]:
    """The context the CDK CLI gives an app: cdk.json's, then cdk.context.json's."""
    context: dict[str, Any] = dict(json.loads((root / "cdk.json").read_text()).get("context", {}))
    saved = root / "cdk.context.json"
    if saved.is_file():
        context.update(json.loads(saved.read_text()))
    return context


def parse_context(pairs: list[str] | None) -> dict[str, str]:
    """`-c key=value` arguments."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"-c {pair!r}: expected key=value")
        out[key] = value
    return out


def build_layers(arch: str, root: Path = ROOT) -> None:
    """The dependency layers for `arch` (pip downloads the wheels once; stamped after)."""
    done = subprocess.run(
        [sys.executable, str(root / "infra" / "build_layers.py"), "--arch", arch],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SynthError(f"building the layers for {arch} failed:\n{done.stdout}{done.stderr}")


def fingerprint(paths: list[Path], root: Path = ROOT) -> str:
    """A digest of the files' paths, sizes and modification times."""
    h = hashlib.sha256()
    for top in paths:
        if top.is_file():
            files = [top]
        elif top.is_dir():
            files = sorted(
                p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            )
        else:
            h.update(f"missing {top}\n".encode())
            continue
        for f in files:
            st = f.stat()
            h.update(f"{f} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def synthesize(
    bundle: Path | str | None = None,
    *,
    stage: str = "prod",
    arch: str | None = None,
    context: Mapping[str, Any] | None = None,
    cache: Path | None = None,
    root: Path = ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
) -> Synth:
    """Synthesize the app for the local stack; the cloud assembly of stack `avsev-<stage>`.

    `context` adds to (and wins over) stage, arch and bundle; a context that fetches from the
    model registry (`model=...`) is never cached: what it fetches can change."""
    started = time.perf_counter()
    arch = arch or host_arch()
    given: dict[str, Any] = {"stage": stage, "arch": arch}
    if bundle is not None:
        given["bundle"] = str(Path(bundle).resolve())
    given.update(context or {})
    stage = str(given["stage"])
    full = {**cdk_context(root), **given}
    cache = cache or CACHE
    cache.mkdir(parents=True, exist_ok=True)
    inputs = [root / p for p in INPUTS] + [root / "layers" / n / "requirements.txt" for n in LAYERS]
    if "bundle" in given:
        inputs.append(Path(given["bundle"]))
    cacheable = not any(k in given for k in ("model", "registry", "shadow"))
    with _locked(cache / ".lock"):
        build_layers(arch, root)
        inputs += [root / "layers" / n / "build" / f"{arch}.inputs" for n in LAYERS]
        key = hashlib.sha256(
            (json.dumps(full, sort_keys=True, default=str) + fingerprint(inputs, root)).encode()
        ).hexdigest()[:24]
        folder = cache / "assemblies" / key
        name = stack_name(stage)
        if cacheable and (folder / f"{name}.template.json").is_file():
            os.utime(folder)
            return Synth(folder, name, time.perf_counter() - started, True)
        outdir = cache / "cdk.out"
        outdir.mkdir(exist_ok=True)
        app = json.loads((root / "cdk.json").read_text())["app"]
        process_env = {
            **os.environ,
            **(env or {}),
            "CDK_OUTDIR": str(outdir),
            "CDK_CONTEXT_JSON": json.dumps(full),
        }
        done = subprocess.run(
            app,
            shell=True,
            cwd=root,
            env=process_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            output = "\n".join(
                line for line in (done.stdout + done.stderr).splitlines() if "!!" not in line
            )
            raise SynthError(f"`{app}` failed (exit {done.returncode}):\n{output[-4000:]}")
        folder = _keep(
            outdir, folder if cacheable else cache / "assemblies" / f"{key}-{time.time_ns()}", name
        )
        _prune(cache / "assemblies")
    return Synth(folder, name, time.perf_counter() - started, False)


def _keep(outdir: Path, folder: Path, stack: str) -> Path:
    """The stack's template, its asset manifest (paths absolute) and the manifest, copied."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (f"{stack}.template.json", "manifest.json"):
        shutil.copy2(outdir / name, tmp / name)
    assets = json.loads((outdir / f"{stack}.assets.json").read_text())
    for entry in assets.get("files", {}).values():
        entry["source"]["path"] = str((outdir / entry["source"]["path"]).resolve())
    (tmp / f"{stack}.assets.json").write_text(json.dumps(assets, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _prune(assemblies: Path, keep: int = KEEP) -> None:
    folders = sorted(
        (p for p in assemblies.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime
    )
    for old in folders[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One synth at a time into the shared output folder (other processes wait)."""
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
