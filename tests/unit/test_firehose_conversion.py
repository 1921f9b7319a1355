"""Record format conversion as the stack's delivery streams do it (OpenX JSON SerDe, the
tables' schema): the timestamp forms Firehose documents, type mismatches, messages that are
not JSON objects, and a record failing as a whole."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from avsev.monitoring.firehose import (
    MALFORMED_DATA,
    PARSE_ERROR,
    ConversionError,
    cloudwatch_payload,
    convert_message,
    convert_record,
    extract_messages,
    parse_timestamp,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2017-02-07T15:13:01.39256Z", dt.datetime(2017, 2, 7, 15, 13, 1, 392560)),
        ("2017-02-07T15:13:01.123456789Z", dt.datetime(2017, 2, 7, 15, 13, 1, 123456)),
        ("2017-02-07T15:13:01Z", dt.datetime(2017, 2, 7, 15, 13, 1)),
        ("2017-02-07 15:13:01.14", dt.datetime(2017, 2, 7, 15, 13, 1, 140000)),
        ("2017-2-7 15:13:01", dt.datetime(2017, 2, 7, 15, 13, 1)),
        (1518033528, dt.datetime(2018, 2, 7, 19, 58, 48)),
        (1518033528123, dt.datetime(2018, 2, 7, 19, 58, 48, 123000)),
        (1518033528.123, dt.datetime(2018, 2, 7, 19, 58, 48, 123000)),
        ("1518033528", dt.datetime(2018, 2, 7, 19, 58, 48)),
    ],
)
def test_the_documented_timestamp_forms_are_taken(value, expected):
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-06T10:00:00+05:00",  # an offset
        "2026-12-06T10:00:00+00:00",
        "2026-12-06T10:00:00",  # T without Z
        "2026-12-06",
        "2017-02-07T15:13:01.1234567891Z",  # 10 fraction digits
        "2026-13-06 10:00:00",
        "yesterday",
        True,
        {"at": 1},
    ],
)
def test_other_timestamps_are_refused(value):
    with pytest.raises(ValueError):
        parse_timestamp(value)


OUTCOME = {
    "record_type": "outcome",
    "schema_version": 1,
    "request_id": "r",
    "ev_id": "E",
    "timestamp": "2026-12-06T10:00:00Z",
    "actual_severity": "Fatal",
}


def test_a_message_is_matched_to_the_columns_case_insensitively_and_typed():
    row = convert_message(
        json.dumps({**OUTCOME, "Schema_Version": "1", "EXTRA": 1, "observed_at": 1796558400000}),
        "outcomes",
    )
    assert row == {
        "record_type": "outcome",
        "schema_version": 1,
        "request_id": "r",
        "ev_id": "E",
        "timestamp": "2026-12-06 10:00:00.000000",
        "actual_severity": "Fatal",
        "observed_at": "2026-12-06 12:00:00.000000",
        "seq": None,  # a column of the table the message does not carry
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("observed_at", "2026-12-06T10:00:00+05:00"),
        ("schema_version", "one"),
        ("schema_version", 1.5),
        ("schema_version", 2**40),
        ("schema_version", True),
        ("request_id", {"nested": 1}),
        ("timestamp", [1]),
    ],
)
def test_a_value_that_does_not_fit_its_column_fails(field, value):
    with pytest.raises(ConversionError) as e:
        convert_message(json.dumps({**OUTCOME, field: value}), "outcomes")
    assert e.value.code == MALFORMED_DATA and repr(field) in e.value.message


def test_prediction_structs_and_arrays_are_checked_inside():
    base = {
        "record_type": "prediction",
        "timestamp": "2026-12-06T10:00:00Z",
        "probabilities": {"FATAL": "0.5", "serious": 0.5},
        "shadow": "true",
        "warnings": [{"code": "c", "field": "f", "detail": "d"}],
    }
    row = convert_message(json.dumps(base), "predictions")
    assert row["probabilities"]["fatal"] == 0.5 and row["shadow"] is True
    assert row["warnings"] == [{"code": "c", "field": "f", "detail": "d"}]
    for field, value in (
        ("probabilities", 0.5),
        ("probabilities", {"fatal": "high"}),
        ("warnings", {"code": "c"}),
        ("shadow", "yes"),
        ("latency_ms", "fast"),
    ):
        with pytest.raises(ConversionError, match=field):
            convert_message(json.dumps({**base, field: value}), "predictions")


def test_a_message_that_is_not_a_json_object_fails():
    with pytest.raises(ConversionError) as e:
        convert_message("not json", "outcomes")
    assert e.value.code == PARSE_ERROR
    for message in ("[1, 2]", '"text"', "3"):
        with pytest.raises(ConversionError) as e:
            convert_message(message, "outcomes")
        assert e.value.code == MALFORMED_DATA


def test_one_bad_message_fails_the_whole_record_and_an_empty_record_fails():
    good = json.dumps(OUTCOME)
    assert len(convert_record([good, good], "outcomes")) == 2
    with pytest.raises(ConversionError, match="message 2 of 3"):
        convert_record(
            [good, json.dumps({**OUTCOME, "observed_at": "2026-12-06T10:00:00+05:00"}), good],
            "outcomes",
        )
    with pytest.raises(ConversionError, match="empty"):
        convert_record([], "outcomes")


def test_a_cloudwatch_logs_payload_gives_its_messages_back():
    raw = cloudwatch_payload(["a", "b"], log_group="/g", log_stream="s", timestamp_ms=1)
    assert extract_messages(raw) == ["a", "b"]
    assert extract_messages(b'{"x": 1}\n\n{"y": 2}\n') == ['{"x": 1}', '{"y": 2}']
