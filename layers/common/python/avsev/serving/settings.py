"""The environment of a serving function, parsed once at start into a model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator


class SettingsError(Exception):
    """A missing or bad environment variable, named."""


class Settings(BaseModel):
    """MODEL_BUNDLE_PATH (required), SHADOW_BUNDLE_PATH, AVSEV_VERIFY_BUNDLE."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    model_bundle_path: Path
    shadow_bundle_path: Path | None = None
    avsev_verify_bundle: bool = True

    @field_validator("model_bundle_path", "shadow_bundle_path")
    @classmethod
    def _is_directory(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {
            k.lower(): v
            for k, v in env.items()
            if k.upper() in {"MODEL_BUNDLE_PATH", "SHADOW_BUNDLE_PATH", "AVSEV_VERIFY_BUNDLE"}
            and v != ""
        }
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            problems = "; ".join(
                f"{str(err['loc'][0]).upper()}: {err['msg'].removeprefix('Value error, ')}"
                for err in e.errors()
            )
            raise SettingsError(f"bad environment: {problems}") from None
