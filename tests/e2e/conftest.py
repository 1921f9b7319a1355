"""Fixtures of the end-to-end tests that drive a local stack of two model versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from stack_support import serving


@pytest.fixture(scope="session")
def candidate_bundle(real_model_dir, tmp_path_factory) -> Path:
    """Version 1.1.0 of the real model, in a folder of its own (versions are immutable, and
    tests/infra builds another 1.1.0 beside its bundles)."""
    from avsev.pipeline.build import build_bundle
    from avsev.serving.runtime import host_arch

    out = tmp_path_factory.mktemp("candidate-bundles")
    return build_bundle(real_model_dir, "1.1.0", out_root=out, arch=host_arch())


@pytest.fixture(scope="module")
def stack(real_bundle_dir, candidate_bundle):
    """A local stack serving the real bundle (1.0.0) and the candidate, one per test module."""
    yield from serving(real_bundle_dir, candidate_bundle)
