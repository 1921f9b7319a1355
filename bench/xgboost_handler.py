"""The predict function with xgboost in place of the compiled model: the baseline for the
handler's cold start and latency. Same resolver, validation and records; only the model differs.

    python bench/xgboost_handler.py BUNDLE_DIR MODEL_JSON   (prints cold-start ms)
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import contextlib  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402


class XGBoostModel:
    """The runtime's interface (predict, predict_many, predict_buffer, decide), answered by
    xgboost."""

    def __init__(self, model_json: str, n_feature: int, n_class: int) -> None:
        import numpy as np
        import xgboost as xgb

        self._np = np
        self.booster = xgb.Booster()
        self.booster.load_model(model_json)
        self.booster.set_param({"nthread": 1})
        self.n_feature, self.n_class = n_feature, n_class

    def predict(self, row: Sequence[float], *, margin: bool = False) -> list[float]:
        x = self._np.asarray([row], dtype=self._np.float32)
        return self.booster.inplace_predict(x, predict_type="margin" if margin else "value")[
            0
        ].tolist()

    def predict_many(
        self, rows: Sequence[Sequence[float]], *, margin: bool = False
    ) -> list[list[float]]:
        x = self._np.asarray(rows, dtype=self._np.float32)
        return self.booster.inplace_predict(
            x, predict_type="margin" if margin else "value"
        ).tolist()

    def predict_buffer(self, buffer: Any, n: int, *, margin: bool = False, **_: Any) -> Any:
        x = self._np.frombuffer(buffer, dtype=self._np.float32).reshape(n, self.n_feature)
        return self.booster.inplace_predict(
            x, predict_type="margin" if margin else "value"
        ).reshape(-1)

    def decide(self, out: Any, n: int, *, digits: int = 6) -> tuple[list[float], list[int]]:
        raw = out.tolist()
        rows = [raw[i : i + self.n_class] for i in range(0, n * self.n_class, self.n_class)]
        return [round(p, digits) for p in raw], [r.index(max(r)) for r in rows]


def xgboost_predict_function(bundle_dir: str, model_json: str) -> Any:
    from dataclasses import replace

    from avsev.serving.scoring import Scorer
    from avsev_tools.local.lambda_runtime import load_handler_module

    module = load_handler_module("predict", {"MODEL_BUNDLE_PATH": bundle_dir})
    b = module.service.bundle
    module.service.scorer = Scorer(
        replace(b, model=XGBoostModel(model_json, len(b.spec), len(b.classes)))
    )
    return module


if __name__ == "__main__":
    from avsev_tools.local.lambda_runtime import LocalContext, proxy_event

    fn = xgboost_predict_function(sys.argv[1], sys.argv[2])
    with contextlib.redirect_stdout(io.StringIO()):
        fn.handler(
            proxy_event("POST", "/predict", {"ev_id": "A1", "make": "Cessna"}), LocalContext()
        )
    print((time.perf_counter() - _T0) * 1e3)
