"""`avsev cost`: the arithmetic against a case worked by hand, the template's settings, the
shipped price table, and what Lambda's log settings leave in the log."""

from __future__ import annotations

import math
from typing import Any

import pytest
from avsev_tools import cost
from avsev_tools.local.logs import EVENT_OVERHEAD_BYTES, LoggingConfig, platform_lines

GIB = 2**30
MONTH_S = 730 * 3600

TEMPLATE: dict[str, Any] = {
    "Resources": {
        "PredictLogs1A2B": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}},
        "PredictFunction3C4D": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "MemorySize": 1024,
                "Architectures": ["arm64"],
                "LoggingConfig": {
                    "LogFormat": "JSON",
                    "SystemLogLevel": "WARN",
                    "ApplicationLogLevel": "INFO",
                    "LogGroup": {"Ref": "PredictLogs1A2B"},
                },
            },
        },
        "DriftCheckFunction5E6F": {
            "Type": "AWS::Lambda::Function",
            "Properties": {"MemorySize": 512, "TracingConfig": {"Mode": "Active"}},
        },
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {}},
        "Stream": {"Type": "AWS::KinesisFirehose::DeliveryStream", "Properties": {}},
        "Hourly": {
            "Type": "AWS::Events::Rule",
            "Properties": {"ScheduleExpression": "rate(1 hour)"},
        },
        "Uploaded": {"Type": "AWS::Events::Rule", "Properties": {"EventPattern": {}}},
        "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {}},
    }
}

INPUTS = {
    "routes": {
        "predict": {
            "function": "predict",
            "rows_per_request": 1,
            "records_per_request": 1,
            "app_bytes": {"record": 1000.0, "metrics": 500.0, "other": 0.0},
            "handler_ms_p50": 0.5,
        }
    },
    "metric_series": 10,
    "athena_bytes_scanned_per_record": 3000.0,
}

PRICES = {
    "as_of": "test",
    "hours_per_month": 730,
    "api_gateway_rest": {"usd_per_million_requests": 3.5},
    "api_gateway_http": {"usd_per_million_requests": 1.0},
    "lambda_requests": {"usd_per_million_requests": 0.2},
    "lambda_duration": {"usd_per_gb_second": {"arm64": 0.0000133334, "x86_64": 0.0000166667}},
    "cloudwatch_logs": {
        "usd_per_gb_ingested": 0.5,
        "usd_per_gb_month_stored": 0.03,
        "stored_fraction_of_ingested": 0.0,
    },
    "cloudwatch_metrics": {"usd_per_metric_month": 0.3},
    "cloudwatch_alarms": {"usd_per_alarm_month": 0.1},
    "cloudwatch_dashboards": {"usd_per_dashboard_month": 3.0},
    "xray": {"usd_per_million_traces": 5.0, "reservoir_per_second": 1, "rate": 0.05},
    "firehose": {
        "usd_per_gb_ingested": 0.029,
        "record_rounding_kb": 5,
        "usd_per_gb_converted": 0.018,
    },
    "athena": {"usd_per_tb_scanned": 5.0},
    "fargate": {"usd_per_vcpu_hour": {"arm64": 0.04}, "usd_per_gb_hour": {"arm64": 0.005}},
    "alb": {
        "usd_per_hour": 0.02,
        "usd_per_lcu_hour": 0.01,
        "lcu_gb_per_hour": 1,
        "lcu_rule_evaluations_per_second": 1000,
    },
}


def test_settings_read_from_the_template():
    s = cost.settings_from_template(TEMPLATE)
    assert s.api == "REST"
    predict = s.functions["predict"]
    assert (predict.memory_mb, predict.arch, predict.retention_days, predict.traced) == (
        1024,
        "arm64",
        30,
        False,
    )
    assert predict.logging == LoggingConfig("JSON", "INFO", "WARN")
    drift = s.functions["drift_check"]
    assert (drift.memory_mb, drift.arch, drift.traced) == (512, "x86_64", True)
    assert drift.logging == LoggingConfig()  # no LoggingConfig: Text, no filtering
    assert (s.delivery_streams, s.schedules, s.alarms, s.dashboards) == (1, ("rate(1 hour)",), 1, 0)


def test_an_http_api_is_priced_as_one():
    resources = {k: v for k, v in TEMPLATE["Resources"].items() if k != "Api"}
    resources["HttpApi"] = {"Type": "AWS::ApiGatewayV2::Api", "Properties": {}}
    e = cost.estimate({"Resources": resources}, INPUTS, PRICES)
    assert e.settings.api == "HTTP"
    assert e.routes["predict"].usd["API Gateway"] == pytest.approx(1.0e-6)


def test_cost_per_prediction_worked_by_hand():
    """One /predict request, by hand:
    - API Gateway REST $3.50 and Lambda requests $0.20 per million;
    - duration: 0.5 ms at 1,024 MB runs at 1024/1769 of a vCPU: 0.5 × 1769/1024 = 0.864 ms,
      billed 1 ms: 1 GB × 0.001 s × $0.0000133334;
    - logs: 1,000 + 500 bytes (JSON format, system level WARN: no system lines), $0.50/GiB;
    - Firehose: the record's 1,000 bytes billed as 5 KiB at $0.029/GiB, converted at $0.018/GiB;
    - Athena: 3,000 bytes scanned per record at $5/TiB."""
    e = cost.estimate(TEMPLATE, INPUTS, PRICES)
    p = e.routes["predict"]
    assert p.billed_ms == 1
    assert p.log_bytes == {"record": 1000.0, "metrics": 500.0, "other": 0.0, "platform": 0.0}
    by_hand = {
        "API Gateway": 3.5e-6,
        "Lambda requests": 0.2e-6,
        "Lambda duration": 1.0 * 0.001 * 0.0000133334,
        "CloudWatch Logs": 1500 / GIB * 0.5,
        "Firehose + S3": 5120 / GIB * 0.029 + 1000 / GIB * 0.018,
        "Athena": 3000 / 2**40 * 5.0,
    }
    assert p.usd == pytest.approx(by_hand, rel=1e-9)
    assert p.total * 1e6 == pytest.approx(4.58052, abs=1e-5)  # $ per million, summed by hand

    # 10 requests a second for a 730-hour month: 26.28 million requests, no X-Ray (tracing
    # off), 10 metric series at $0.30 and one alarm at $0.10
    month = e.per_month[10]
    assert month["X-Ray"] == 0.0
    assert month["CloudWatch metrics"] == pytest.approx(3.0)
    assert month["CloudWatch alarms"] == pytest.approx(0.1)
    assert sum(month.values()) == pytest.approx(4.58052 * 26.28 + 3.1, rel=1e-5)

    # provisioned: 2 tasks × 730 h × (1 vCPU × $0.04 + 2 GB × $0.005) = $73, the ALB
    # 730 × ($0.02 + LCUs × $0.01), LCUs = r × 1,500 B × 3,600 / GiB; records straight to
    # Firehose r × 2,628,000 × 1,000 B / GiB × ($0.029 + $0.018). Equal to the serverless
    # cost 3.1 + 12.0376 r where 87.6 + 0.15173 r = 3.1 + 12.0376 r: r ≈ 7.109 a second
    lcu_per_rps = 1500 * 3600 / GIB
    fixed = 73 + 730 * 0.02
    per_rps_provisioned = 730 * 0.01 * lcu_per_rps + MONTH_S * 1000 / GIB * 0.047
    per_rps_serverless = MONTH_S * p.total
    r = (fixed - 3.1) / (per_rps_serverless - per_rps_provisioned)
    assert r == pytest.approx(7.109, abs=0.01)
    assert e.crossover_rps is not None
    assert r <= e.crossover_rps <= r * 1.011  # the first point of a 1% grid above it
    assert sum(e.provisioned_per_month[10].values()) == pytest.approx(
        fixed + 10 * per_rps_provisioned
    )


def test_xray_is_priced_when_predictions_are_traced():
    """Predict with Active tracing is sampled (1 a second, then 5%); with PassThrough it is
    traced only when a REST stage sampled the request; an HTTP API samples nothing."""

    def xray(predict_mode: str, stage_traced: bool | None, http: bool = False) -> float:
        resources = {k: dict(v) for k, v in TEMPLATE["Resources"].items()}
        predict = dict(resources["PredictFunction3C4D"]["Properties"])
        predict["TracingConfig"] = {"Mode": predict_mode}
        resources["PredictFunction3C4D"] = {"Type": "AWS::Lambda::Function", "Properties": predict}
        if stage_traced is not None:
            resources["Stage"] = {
                "Type": "AWS::ApiGateway::Stage",
                "Properties": {"TracingEnabled": stage_traced},
            }
        if http:
            del resources["Api"]
            resources["HttpApi"] = {"Type": "AWS::ApiGatewayV2::Api", "Properties": {}}
        return cost.estimate({"Resources": resources}, INPUTS, PRICES).per_month[100]["X-Ray"]

    sampled = (1 + 0.05 * 99) * MONTH_S * 5.0 / 1e6  # traces a month × $5 a million
    assert xray("Active", True) == pytest.approx(sampled)
    assert xray("PassThrough", True) == pytest.approx(sampled)  # the stage samples
    assert xray("PassThrough", False) == 0.0
    assert xray("PassThrough", None, http=True) == 0.0
    assert xray("Active", None, http=True) == pytest.approx(sampled)


def test_xray_traces_follow_the_default_sampling_rule():
    assert cost.xray_traces_per_second(0.5, PRICES) == 0.5
    assert cost.xray_traces_per_second(101, PRICES) == pytest.approx(1 + 0.05 * 100)


def test_billed_duration_scales_to_the_cpu_share_and_rounds_up():
    assert cost.billed_ms(0.5, 1769) == 1
    assert cost.billed_ms(1.2, 1769) == 2
    assert cost.billed_ms(1.0, 3538) == 1  # more than a vCPU is not faster single-threaded
    assert cost.billed_ms(1.0, 256) == math.ceil(1769 / 256)


def test_the_shipped_price_table_is_dated_and_sourced():
    prices = cost.load_prices()
    assert prices["region"] == "us-east-1" and prices["as_of"]
    for key, entry in prices.items():
        if isinstance(entry, dict):
            assert entry["source"].startswith("https://aws.amazon.com/"), key


def test_system_lines_by_log_format_and_level():
    """Text: START, END and REPORT (with the X-Ray line when traced), never filtered; JSON at
    INFO: platform.start and platform.report; JSON at WARN: none."""
    args = dict(
        request_id="8f5a0c1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b",
        version="12",
        duration_ms=0.8,
        memory_mb=1024,
        max_memory_mb=90,
        traced=True,
    )
    text = platform_lines(LoggingConfig(), **args)
    assert [line.split(" ")[0] for line in text] == ["START", "END", "REPORT"]
    assert "Billed Duration: 1 ms" in text[2] and "\nXRAY TraceId: " in text[2]
    info = platform_lines(LoggingConfig("JSON", "INFO", "INFO"), **args)
    assert ['"type":"platform.start"' in info[0], '"type":"platform.report"' in info[1]] == [
        True,
        True,
    ]
    assert platform_lines(LoggingConfig("JSON", "INFO", "WARN"), **args) == []
    assert sum(len(x) + EVENT_OVERHEAD_BYTES for x in text) > 300


def test_application_log_level_filters_json_lines_by_their_level():
    """A line without a level (a record, an EMF blob, text) is INFO
    (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html)."""
    record = '{"record_type":"prediction","ev_id":"X"}'
    warning = '{"level":"WARNING","message":"shadow scoring failed"}'
    debug = '{"level":"DEBUG","message":"detail"}'
    info = LoggingConfig("JSON", "INFO", "WARN")
    assert info.keeps_application(record) and info.keeps_application("plain text")
    assert info.keeps_application(warning) and not info.keeps_application(debug)
    warn = LoggingConfig("JSON", "WARN", "WARN")
    assert not warn.keeps_application(record) and warn.keeps_application(warning)
    assert LoggingConfig().keeps_application(debug)  # Text format: nothing is filtered


def test_avsev_cost_synthesizes_the_variant_its_context_names(monkeypatch, tmp_path, capsys):
    """`avsev cost --bundle B -c api=http` synthesizes with that context, as `cdk synth -c`;
    a context that is not key=value is refused, naming it."""
    import json

    from avsev_tools.cli import main
    from avsev_tools.local import synth as synth_module

    template = tmp_path / "avsev-prod.template.json"
    http = {k: v for k, v in TEMPLATE["Resources"].items() if k != "Api"}
    http["HttpApi"] = {"Type": "AWS::ApiGatewayV2::Api", "Properties": {}}
    template.write_text(json.dumps({"Resources": http}))
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(INPUTS))
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    seen = {}

    class Synthesized:
        folder = tmp_path
        stack = "avsev-prod"

    def fake_synthesize(bundle, *, stage, arch, context=None):
        seen.update(bundle=bundle, context=context)
        return Synthesized()

    monkeypatch.setattr(synth_module, "synthesize", fake_synthesize)
    args = ["cost", "--bundle", "B", "--inputs", str(inputs), "--prices", str(prices)]
    assert main([*args, "-c", "api=http", "-c", "tracing=active"]) == 0
    assert seen == {"bundle": "B", "context": {"api": "http", "tracing": "active"}}
    assert "Settings: HTTP API" in capsys.readouterr().out
    assert main([*args, "-c", "api"]) == 2
    assert "-c 'api': give key=value" in capsys.readouterr().err


def extension_case() -> tuple[dict[str, Any], dict[str, Any]]:
    """The stack with the records extension (predict's environment names a spool; flushes
    of at most 2,000,000 bytes or 10 s) and the bench's measurements of its path."""
    resources = {k: v for k, v in TEMPLATE["Resources"].items() if k != "Api"}
    resources["HttpApi"] = {"Type": "AWS::ApiGatewayV2::Api", "Properties": {}}
    predict = resources["PredictFunction3C4D"]
    resources["PredictFunction3C4D"] = {
        **predict,
        "Properties": {
            **predict["Properties"],
            "Environment": {
                "Variables": {
                    "RECORDS_SPOOL": "/tmp/avsev-records",
                    "RECORDS_FLUSH_BYTES": "2000000",
                    "RECORDS_FLUSH_SECONDS": "10",
                }
            },
        },
    }
    routes: dict[str, Any] = dict(INPUTS["routes"])  # type: ignore[call-overload]
    inputs = {
        **INPUTS,
        "routes": {
            "predict": {
                **routes["predict"],
                "app_bytes": {"record": 1000.0, "metrics": 0.0, "other": 0.0},
                "handler_ms_p50": 0.4,
            }
        },
        "extension": {
            "flush_bytes": 921600,
            "flush_seconds": 10.0,
            "functions": {
                "predict": {
                    "handler_ms_p50_stdout": 0.4,
                    "handler_ms_p50_spool": 0.41,
                    "check_ms_p50": 0.02,
                    "flushes": {
                        "1": {"emf_log_bytes": 400, "flush_ms": 0.5},
                        "1000": {"emf_log_bytes": 10000, "flush_ms": 30.0},
                    },
                }
            },
        },
    }
    return {"Resources": resources}, inputs


def test_cost_per_prediction_with_the_records_extension_worked_by_hand():
    """One /predict request at 100 a second, the records extension's path, by hand:
    - a flush holds 10 s of traffic, 1,000 lines (the 2,000,000-byte limit would hold 2,051
      lines of 975 bytes: the 1,000-byte log event less its 26-byte overhead, plus a newline);
    - CloudWatch Logs: no record line; the flush's EMF documents, 10,000 bytes over 1,000
      lines: 10 bytes a request at $0.50/GiB;
    - Firehose: one record of 975,000 bytes, billed in 5 KiB increments: 191 × 5,120 =
      977,920 bytes, 977.92 a line at $0.029/GiB, and 975 bytes converted at $0.018/GiB;
    - duration: 0.4 ms + 0.01 (the spool append) + 0.02 (the extension's check) + the flush's
      30 ms and the 30 ms PutRecordBatch round trip over 1,000 lines (0.06) = 0.49 ms, at
      1769/1024 of it 0.846 ms, billed 1 ms;
    - API Gateway HTTP $1.00, Lambda requests $0.20, Athena as without the extension."""
    template, inputs = extension_case()
    e = cost.estimate(template, inputs, PRICES)
    assert e.settings.records == "extension"
    assert (e.settings.flush_bytes, e.settings.flush_seconds) == (2_000_000, 10.0)
    p = e.routes["predict"]
    assert p.lines_per_flush == 1000 and p.billed_ms == 1
    assert p.log_bytes == {"record": 0.0, "metrics": 10.0, "other": 0.0, "platform": 0.0}
    by_hand = {
        "API Gateway": 1.0e-6,
        "Lambda requests": 0.2e-6,
        "Lambda duration": 1.0 * 0.001 * 0.0000133334,
        "CloudWatch Logs": 10 / GIB * 0.5,
        "Firehose + S3": 977.92 / GIB * 0.029 + 975 / GIB * 0.018,
        "Athena": 3000 / 2**40 * 5.0,
    }
    assert p.usd == pytest.approx(by_hand, rel=1e-9)
    assert p.total * 1e6 == pytest.approx(1.27439, abs=1e-5)  # $ per million, summed by hand
    assert e.per_month[100]["Firehose + S3"] == pytest.approx(
        by_hand["Firehose + S3"] * 100 * MONTH_S
    )
    # At 1 a second a flush holds 10 lines: the EMF of the 1-line flush measured (400 bytes a
    # line, the nearest measured at or below), one record of 9,750 bytes billed as 10,240
    # (1,024 a line), and the 30 ms round trip over 10 lines: 3 ms more a request
    assert e.lines_per_flush[1] == 10
    at_one = e.per_month[1]
    assert at_one["CloudWatch Logs"] == pytest.approx(400 / GIB * 0.5 * MONTH_S)
    assert at_one["Firehose + S3"] == pytest.approx(
        (1024 / GIB * 0.029 + 975 / GIB * 0.018) * MONTH_S
    )
    billed_at_one = math.ceil((0.4 + 0.01 + 0.02 + 0.5 + 3.0) * 1769 / 1024)
    assert at_one["Lambda duration"] == pytest.approx(
        billed_at_one * 0.001 * 0.0000133334 * MONTH_S
    )


def test_the_extension_needs_its_measured_inputs():
    template, inputs = extension_case()
    del inputs["extension"]
    with pytest.raises(ValueError, match="extension-only"):
        cost.estimate(template, inputs, PRICES)
