"""Running Lambda handlers in process, as the Lambda runtime would: REST proxy events, a
context object, and a function's `app.py` loaded from its folder with its environment.

Used by the local API emulator, the tests and the benchmarks.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from avsev.serving.events import http_api_event, proxy_event, response_headers

__all__ = [
    "LocalContext",
    "http_api_event",
    "load_code",
    "load_handler_module",
    "proxy_event",
    "response_headers",
]

FUNCTIONS_DIR = Path(__file__).resolve().parents[3] / "functions"
"""functions/ of this checkout (tools/avsev_tools/local → repository root)."""


@dataclass
class LocalContext:
    """The parts of the Lambda context object the handlers read."""

    function_name: str = "avsev-predict"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:avsev-predict:live"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/avsev-predict"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_handler_module(
    name: str, env: Mapping[str, str], *, functions_dir: Path = FUNCTIONS_DIR, file: str = "app.py"
) -> ModuleType:
    """Import functions/<name>/app.py afresh with `env` set, as a cold start would.

    The environment is set in this process (handlers read it at import)."""
    os.environ.update(env)
    path = functions_dir / name / file
    safe = re.sub(r"\W", "_", name)
    module_name = f"avsev_fn_{safe}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{path}: no such function")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_code(code: Path, handler: str, env: Mapping[str, str]) -> tuple[ModuleType, str]:
    """A function's code folder (a staged asset of the synthesized template) loaded afresh
    with `env` set, as a cold start would; its module and the handler's attribute name.

    `handler` is the function's Handler setting, `<module>.<function>` (`app.handler`)."""
    module_name, _, attribute = handler.rpartition(".")
    if not module_name or "/" in module_name:
        raise ValueError(f"handler {handler!r}: expected <module>.<function>")
    folder = code / Path(*module_name.split(".")).parent
    module = load_handler_module(
        folder.name, env, functions_dir=folder.parent, file=f"{module_name.split('.')[-1]}.py"
    )
    return module, attribute
