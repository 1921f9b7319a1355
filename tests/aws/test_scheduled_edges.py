"""Every scheduled function on Powertools' scheduled-event sample (tests/data/events) at the
edges of time: a clear logged rejection naming `time`, never a traceback; the sample as
published (no `version`) is refused alike, naming `version`."""

from __future__ import annotations

import boto3
import pytest
from aws_events import scheduled
from lambda_support import FakeContext, load_function
from moto import mock_aws

BUCKET = "avsev-data"


@pytest.fixture()
def aws(fake_aws):
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture()
def scheduled_functions(aws, synthetic_bundle_dir, monkeypatch):
    """The functions EventBridge schedules, and batch_score (its daily run)."""
    env = {
        "DATA_BUCKET": BUCKET,
        "BATCH_BUCKET": BUCKET,
        "MODEL_BUNDLE_PATH": str(synthetic_bundle_dir),
        "ATHENA_WORKGROUP": "wg",
        "GLUE_DATABASE": "db",
        "PREDICT_FUNCTION_NAME": "predict",
        "ALARM_PREFIX": "avsev-",
        "RETRAIN_PROJECT": "retrain",
    }
    names = ("drift_check", "rollup", "ab_analysis", "autopilot", "lifecycle", "batch_score")
    return {name: load_function(name, env, monkeypatch) for name in names}


@pytest.mark.parametrize("time", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
@pytest.mark.parametrize(
    "name", ["drift_check", "rollup", "ab_analysis", "autopilot", "lifecycle", "batch_score"]
)
def test_a_scheduled_time_at_the_edge_is_a_logged_rejection(
    scheduled_functions, name, time, caplog
):
    answer = scheduled_functions[name].handler(scheduled(time), FakeContext())
    assert answer["status"] == "rejected" and answer["error"]["code"] == "invalid_event"
    assert [d["field"] for d in answer["error"]["details"]] == ["time"]
    assert "outside" in answer["error"]["details"][0]["problem"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == ["event rejected"]
    assert not any(r.exc_info for r in caplog.records)  # no traceback logged


@pytest.mark.parametrize(
    "name", ["drift_check", "rollup", "ab_analysis", "autopilot", "lifecycle", "batch_score"]
)
def test_the_sample_as_published_is_refused_naming_version(scheduled_functions, name):
    answer = scheduled_functions[name].handler(
        scheduled("2026-11-20T06:00:00Z", with_version=False), FakeContext()
    )
    assert answer["status"] == "rejected"
    assert [d["field"] for d in answer["error"]["details"]] == ["version"]


def test_the_daily_batch_run_still_runs_on_the_samples_own_time(scheduled_functions):
    """1970-01-01, the sample's time, is inside the rule: the run happens (nothing arrived)."""
    summary = scheduled_functions["batch_score"].handler(scheduled(), FakeContext())
    assert summary["status"] == "ok" and summary["files"] == []
