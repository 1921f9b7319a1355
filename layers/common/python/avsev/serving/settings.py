"""The environment of a serving function, parsed once at start into a model (the one settings
mechanism of every function: `avsev.environment.EnvSettings`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from avsev.constants import Env
from avsev.environment import EnvSettings, SettingsError

__all__ = ["Settings", "SettingsError"]


class Settings(EnvSettings):
    """MODEL_BUNDLE_PATH (required), SHADOW_BUNDLE_PATH, AVSEV_VERIFY_BUNDLE."""

    model_bundle_path: Path = Field(validation_alias=Env.MODEL_BUNDLE_PATH)
    shadow_bundle_path: Path | None = Field(None, validation_alias=Env.SHADOW_BUNDLE_PATH)
    avsev_verify_bundle: bool = Field(True, validation_alias=Env.VERIFY_BUNDLE)

    @field_validator("model_bundle_path", "shadow_bundle_path")
    @classmethod
    def _is_directory(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value
