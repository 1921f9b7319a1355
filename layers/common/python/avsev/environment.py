"""A function's environment as a pydantic model, parsed once at its entry: a missing or bad
variable fails at once, by its name (the handler cookbook's `models/env_vars.py` habit).

    class Settings(EnvSettings):
        bucket: str = Field(validation_alias=Env.DATA_BUCKET)
        days: int = Field(7, validation_alias="AB_WINDOW_DAYS")

    SETTINGS = Settings.from_env()   # SettingsError: "bad environment: DATA_BUCKET: Field required"
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["EnvSettings", "SettingsError"]


class SettingsError(Exception):
    """A missing or bad environment variable, named."""


class EnvSettings(BaseModel):
    """Each field's alias is its environment variable; an empty value counts as unset."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        try:
            return cls.model_validate({k: v for k, v in env.items() if v != ""})
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in err['loc'])}: "
                f"{err['msg'].removeprefix('Value error, ')}"
                for err in e.errors()
            )
            raise SettingsError(f"bad environment: {problems}") from None
