"""Shared fixtures: the real NTSB file (shipped in data/, or AVSEV_REAL_DATA), models trained
once per session, and bundles compiled for this machine."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from stack_support import serving

ROOT = Path(__file__).resolve().parents[1]


LONGEST_FIRST = (
    "tests/e2e/test_demo.py",
    "tests/aws/test_retraining.py",
    "tests/e2e/test_rollout_sequence.py",
    "tests/e2e/test_e2e_local.py",
    "tests/e2e/test_local_up_default.py",
    "tests/e2e/test_benches.py",
)
"""Test files that take minutes: `make test` runs the files on parallel workers (pytest-xdist,
a file to a worker), and a long file started last would run alone at the end."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = Path(item.path).relative_to(ROOT).as_posix()
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Path]
) -> Path:
    """What `make(folder)` builds (a trained model, a compiled bundle), once for the whole run:
    parallel workers share the run's temporary folder; the first builds under a lock, the
    others take its result. What is built so is only read by the tests (a test that damages a
    bundle takes a copy, `bundle_copy`)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    built = shared / f"once-{name}.built"
    with (shared / f"once-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            folder = shared / f"once-{name}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            built.write_text(str(make(folder)))
        return Path(built.read_text())


@pytest.fixture(autouse=True)
def _fresh_metrics():
    """Each test starts with no metric dimensions left over. Powertools' `Metrics` instances
    share one store in the process, and an invocation that adds no metric is not flushed: in
    Lambda each function has a process of its own, here the functions of all tests share one."""
    from avsev.serving.observability import metrics

    metrics.clear_metrics()
    yield


@pytest.fixture(scope="session")
def shipped_data_path() -> Path:
    """Never skipped: the file ships with the repository (a missing one is a failure)."""
    from avsev.data import default_data_path

    path = default_data_path()
    assert path.is_file(), f"real NTSB data not found at {path}"
    return path


@pytest.fixture(scope="session")
def real_data_path(shipped_data_path, tmp_path_factory) -> Path:
    """The real file as a user's export is: a plain CSV (uploads, truncation, batch inputs)."""
    from avsev.data import DECOMPRESS, read_bytes

    if shipped_data_path.suffix.lower() not in DECOMPRESS:
        return shipped_data_path
    path = tmp_path_factory.mktemp("real-data") / shipped_data_path.stem
    path.write_bytes(read_bytes(shipped_data_path))
    return path


@pytest.fixture(scope="session")
def real_data(shipped_data_path):
    from avsev.data import load

    return load(shipped_data_path)  # read as shipped, compressed


@pytest.fixture(scope="session")
def real_model_dir(real_data, tmp_path_factory) -> Path:
    from avsev_tools.pipeline.train import save, train

    return built_once(tmp_path_factory, "real-model", lambda out: save(train(real_data), out))


@pytest.fixture(scope="session")
def synthetic_model_dir(tmp_path_factory) -> Path:
    from avsev_tools.pipeline.synthetic import generate
    from avsev_tools.pipeline.train import save, train

    return built_once(
        tmp_path_factory,
        "syn-model",
        lambda out: save(train(generate(6000, seed=1), rounds=60), out),
    )


@pytest.fixture(scope="session")
def real_bundle_dir(real_model_dir, tmp_path_factory) -> Path:
    from avsev.serving.runtime import host_arch
    from avsev_tools.pipeline.build import build_bundle

    return built_once(
        tmp_path_factory,
        "real-bundle",
        lambda root: build_bundle(
            real_model_dir, "1.0.0", out_root=root, arch=host_arch(), parallel_comp=2
        ),
    )


@pytest.fixture(scope="session")
def synthetic_bundle_dir(synthetic_model_dir, tmp_path_factory) -> Path:
    from avsev.serving.runtime import host_arch
    from avsev_tools.pipeline.build import build_bundle

    return built_once(
        tmp_path_factory,
        "syn-bundle",
        lambda root: build_bundle(
            synthetic_model_dir, "0.1.0", out_root=root, arch=host_arch(), name="avsev-synthetic"
        ),
    )


@pytest.fixture(scope="session")
def real_bundle(real_bundle_dir):
    from avsev.serving.bundle import load_bundle

    return load_bundle(real_bundle_dir)


@pytest.fixture()
def bundle_copy(real_bundle_dir, tmp_path) -> Path:
    """A private copy of the real bundle, to damage."""
    return Path(shutil.copytree(real_bundle_dir, tmp_path / real_bundle_dir.name))


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


@pytest.fixture(scope="session")
def functions(real_bundle_dir):
    """The three API functions, imported once with the real bundle (as a container would)."""
    from lambda_support import load_function

    with pytest.MonkeyPatch.context() as mp:
        env = {"MODEL_BUNDLE_PATH": str(real_bundle_dir)}
        return {name: load_function(name, env, mp) for name in ("predict", "explain", "outcomes")}


@pytest.fixture(scope="session")
def openapi_document(functions):
    from avsev.serving.openapi import merge

    return merge(
        [m.app.get_openapi_json_schema(title="part", version="0") for m in functions.values()],
        title="Aviation accident severity API",
        version="1",
    )


@pytest.fixture()
def fake_aws(monkeypatch):
    """Fake credentials and no endpoint override, so moto's mock_aws catches every call."""
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture(scope="session")
def candidate_bundle(real_model_dir, tmp_path_factory) -> Path:
    """Version 1.1.0 of the real model for the end-to-end tests, in a folder of its own
    (versions are immutable, and tests/infra builds another 1.1.0 beside its bundles)."""
    from avsev.serving.runtime import host_arch
    from avsev_tools.pipeline.build import build_bundle

    return built_once(
        tmp_path_factory,
        "candidate-bundle",
        lambda out: build_bundle(real_model_dir, "1.1.0", out_root=out, arch=host_arch()),
    )


@pytest.fixture(scope="module")
def stack(real_bundle_dir, candidate_bundle):
    """A local stack serving the real bundle (1.0.0) and the candidate, one per test module."""
    yield from serving(real_bundle_dir, candidate_bundle)
