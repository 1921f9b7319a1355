"""What the records' delivery streams do to one Firehose record, written once for the local
stack's stand-in (`avsev_tools.local.logs.FirehoseBuffer`) and for `avsev records redrive`.

One Firehose record is one CloudWatch Logs subscription delivery: "Amazon CloudWatch combines
multiple log events into one Firehose record"
(https://docs.aws.amazon.com/firehose/latest/dev/writing-with-cloudwatch-logs.html), sent
gzipped (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html)
as a DATA_MESSAGE whose `logEvents` come from one log stream.
The stream decompresses it and extracts the messages (the Decompression and
CloudWatchLogProcessing processors), then record format conversion reads the messages with
the OpenX JSON SerDe and the Glue table's schema (`avsev.monitoring.tables`). A record that
fails conversion is written, still compressed as it arrived, under
`firehose-errors/<table>/format-conversion-failed/dt=YYYY-MM-DD/`
(https://docs.aws.amazon.com/firehose/latest/dev/decomp-faq.html: "If Amazon Data Firehose
errors out in the processing steps after decompression like ... Data Format Conversion, the
record is delivered in compressed format to the error S3 bucket";
https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html: `error-output-type`
evaluates to `format-conversion-failed`). So the unit that fails together is the whole
subscription delivery: one bad log event keeps every event of its batch out of the table.

The conversion rules, from
https://docs.aws.amazon.com/firehose/latest/dev/record-format-conversion.html:
- a message must be a JSON object ("An array of JSON documents is not a valid input");
- keys are matched to columns case-insensitively (the stack's OpenX `case_insensitive`),
  keys outside the schema are dropped, a missing key is NULL;
- a `timestamp` column takes only the forms the OpenX JSON SerDe parses:
  `yyyy-MM-dd'T'HH:mm:ss[.S]'Z'` and `yyyy-[M]M-[d]d HH:mm:ss[.S]` (up to 9 fraction digits),
  epoch seconds, epoch milliseconds (13 digits or more, as the SerDe tells them apart) and
  floating point epoch seconds. An offset such as `+05:00` is not one of them.
- a value that does not fit its column fails the record ("when the data doesn't match the
  schema", https://docs.aws.amazon.com/firehose/latest/dev/record-format-conversion-error-handling.html).
  What counts as fitting is not listed there; this module takes the SerDe's reading of a
  JSON value as the text of a primitive: `int`/`bigint` take an integer or a string of one
  (in range), `double` a number or a numeric string, `boolean` true/false or the strings
  "true"/"false", `string` any scalar (numbers and booleans as their text); a struct column
  takes an object only and an array column an array only; null is NULL everywhere.

The error document is the one Firehose writes for a format-conversion failure: one JSON line
per failed record with `attemptsMade`, `arrivalTimestamp`, `lastErrorCode`,
`lastErrorMessage`, `attemptEndingTimestamp` and `rawData` (base64 of the record as it
arrived). The error-handling page has shown the code and message as `lastErrorCode` /
`lastErrorMessage` and, in later revisions, as `ErrorCode` / `ErrorMessage`; the objects
Firehose writes carry `lastErrorCode`, which is what is written here, and readers
(`error_code`) take any of the spellings, `errorCode` of processing failures included.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from avsev.monitoring.tables import TABLES, Column

FORMAT_CONVERSION_FAILED = "format-conversion-failed"
"""`!{firehose:error-output-type}` of a record that failed record format conversion."""
PARSE_ERROR = "DataFormatConversion.ParseError"
MALFORMED_DATA = "DataFormatConversion.MalformedData"
GZIP_MAGIC = b"\x1f\x8b"
EPOCH_MILLIS_DIGITS = 13
"""An integer epoch of this many digits or more is milliseconds (the OpenX SerDe's rule)."""
TIMESTAMP_FORMS = (
    "yyyy-MM-dd'T'HH:mm:ss[.S]'Z', yyyy-[M]M-[d]d HH:mm:ss[.S] (up to 9 fraction digits), "
    "epoch seconds or epoch milliseconds"
)

_UTC_Z = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")
_SPACED = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")
_INTEGER = re.compile(r"^-?\d+$")
_DECIMAL = re.compile(r"^-?\d*\.\d*$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_INT_RANGE = {"int": 2**31, "bigint": 2**63}
_STRUCT = re.compile(r"^struct<(.*)>$")
_ARRAY = re.compile(r"^array<(.*)>$")


class ConversionError(ValueError):
    """A record (or one of its messages) Firehose's conversion would not take."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---- CloudWatch Logs payloads ------------------------------------------------------------------


def cloudwatch_payload(
    messages: Sequence[str],
    *,
    log_group: str,
    log_stream: str,
    timestamp_ms: int,
    owner: str = "123456789012",
    subscription_filter: str = "records",
) -> bytes:
    """A subscription delivery as CloudWatch Logs sends it to Firehose: a gzipped
    DATA_MESSAGE holding the log events of one log stream."""
    document = {
        "messageType": "DATA_MESSAGE",
        "owner": owner,
        "logGroup": log_group,
        "logStream": log_stream,
        "subscriptionFilters": [subscription_filter],
        "logEvents": [
            {"id": f"{timestamp_ms}{i:06d}", "timestamp": timestamp_ms, "message": m}
            for i, m in enumerate(messages)
        ],
    }
    return gzip.compress(json.dumps(document, separators=(",", ":")).encode())


def extract_messages(data: bytes) -> list[str]:
    """The messages of a Firehose record as the stream's processors see them: a gzipped
    CloudWatch Logs DATA_MESSAGE gives its log events' messages (a CONTROL_MESSAGE none);
    anything else is taken as JSON lines (what a processing failure may have stored)."""
    if data[:2] == GZIP_MAGIC:
        document = json.loads(gzip.decompress(data))
        if document.get("messageType") != "DATA_MESSAGE":
            return []
        return [str(e["message"]) for e in document.get("logEvents", [])]
    return [line for line in data.decode("utf-8").splitlines() if line.strip()]


# ---- error documents -----------------------------------------------------------------------------


def error_document(
    raw: bytes, code: str, message: str, *, arrival_ms: int, ended_ms: int, attempts: int = 1
) -> str:
    """One line of a format-conversion error object (see the module docstring)."""
    return json.dumps(
        {
            "attemptsMade": attempts,
            "arrivalTimestamp": arrival_ms,
            "lastErrorCode": code,
            "lastErrorMessage": message,
            "attemptEndingTimestamp": ended_ms,
            "rawData": base64.b64encode(raw).decode("ascii"),
        },
        separators=(",", ":"),
    )


def error_code(document: dict[str, Any]) -> str:
    for name in ("lastErrorCode", "ErrorCode", "errorCode"):
        if document.get(name):
            return str(document[name])
    return ""


def error_message(document: dict[str, Any]) -> str:
    for name in ("lastErrorMessage", "ErrorMessage", "errorMessage"):
        if document.get(name):
            return str(document[name])
    return ""


# ---- record format conversion --------------------------------------------------------------------


def parse_timestamp(value: Any) -> dt.datetime:
    """A JSON value of a timestamp column as the OpenX JSON SerDe reads it (naive, UTC);
    ValueError for anything else."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("not a timestamp")
    text = value if isinstance(value, str) else json.dumps(value)
    m = _UTC_Z.match(text) or _SPACED.match(text)
    if m:
        year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
        fraction = (m.group(7) or "").ljust(6, "0")[:6]
        return dt.datetime(year, month, day, hour, minute, second, int(fraction))
    epoch = dt.datetime(1970, 1, 1)
    if _INTEGER.match(text):
        number = int(text)
        if len(text.lstrip("-")) >= EPOCH_MILLIS_DIGITS:
            return epoch + dt.timedelta(milliseconds=number)
        return epoch + dt.timedelta(seconds=number)
    if _DECIMAL.match(text) and any(c.isdigit() for c in text):
        return epoch + dt.timedelta(milliseconds=int(float(text) * 1000))
    raise ValueError("not a timestamp")


def _mismatch(path: str, hive: str, value: Any) -> ConversionError:
    shown = json.dumps(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    if hive == "timestamp":
        detail = f"the OpenX JSON SerDe takes {TIMESTAMP_FORMS}"
    else:
        detail = f"column type {hive}"
    return ConversionError(
        MALFORMED_DATA, f"Data does not match the schema: field {path!r} = {shown} ({detail})"
    )


def convert_value(value: Any, hive: str, path: str) -> Any:
    """A JSON value converted to its column's type (what DuckDB's reader then takes as is):
    timestamps as `YYYY-MM-DD HH:MM:SS.ffffff` (UTC), numeric strings as numbers."""
    if value is None:
        return None
    a = _ARRAY.match(hive)
    if a:
        if not isinstance(value, list):
            raise _mismatch(path, hive, value)
        return [convert_value(v, a.group(1), f"{path}[{i}]") for i, v in enumerate(value)]
    s = _STRUCT.match(hive)
    if s:
        if not isinstance(value, dict):
            raise _mismatch(path, hive, value)
        fields = [Column(*f.split(":", 1)) for f in s.group(1).split(",")]
        return convert_fields(value, fields, f"{path}.")
    if hive == "timestamp":
        try:
            return parse_timestamp(value).isoformat(sep=" ", timespec="microseconds")
        except (ValueError, OverflowError):
            raise _mismatch(path, hive, value) from None
    if isinstance(value, dict | list):
        raise _mismatch(path, hive, value)
    if hive == "string":
        return value if isinstance(value, str) else json.dumps(value)
    if hive == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _mismatch(path, hive, value)
    if isinstance(value, bool):
        raise _mismatch(path, hive, value)
    if hive in _INT_RANGE:
        text = value if isinstance(value, str) else json.dumps(value)
        if not _INTEGER.match(text) or not -_INT_RANGE[hive] <= int(text) < _INT_RANGE[hive]:
            raise _mismatch(path, hive, value)
        return int(text)
    if hive == "double":
        if isinstance(value, int | float):
            return value
        if _NUMBER.match(value.strip()):
            number = float(value)
            if math.isfinite(number):
                return number
        raise _mismatch(path, hive, value)
    raise ConversionError(MALFORMED_DATA, f"column {path!r}: unsupported type {hive}")


def convert_fields(
    doc: dict[str, Any], columns: Iterable[Column], prefix: str = ""
) -> dict[str, Any]:
    by_name = {str(k).lower(): v for k, v in doc.items()}
    return {c.name: convert_value(by_name.get(c.name), c.type, prefix + c.name) for c in columns}


def convert_message(message: str, table: str) -> dict[str, Any]:
    """One message (JSON document) of a record → the row the table stores; ConversionError
    when the conversion would fail the record."""
    try:
        doc = json.loads(message)
    except ValueError:
        raise ConversionError(
            PARSE_ERROR, f"Encountered malformed JSON: {message[:80]!r}"
        ) from None
    if not isinstance(doc, dict):
        raise ConversionError(
            MALFORMED_DATA,
            "The input JSON is not an object: each message must be one JSON object "
            f"(got {type(doc).__name__})",
        )
    return convert_fields(doc, TABLES[table])


def convert_record(messages: Sequence[str], table: str) -> list[dict[str, Any]]:
    """The rows of one Firehose record; the first message that fails fails the record
    (ConversionError naming which message)."""
    rows = []
    for i, message in enumerate(messages):
        try:
            rows.append(convert_message(message, table))
        except ConversionError as e:
            if len(messages) > 1:
                raise ConversionError(
                    e.code, f"message {i + 1} of {len(messages)}: {e.message}"
                ) from None
            raise
    if not rows:
        raise ConversionError(MALFORMED_DATA, "The record was empty or contained only whitespace.")
    return rows


def row_line(row: dict[str, Any]) -> str:
    """A converted row as the JSON line `write_records_parquet` takes."""
    return json.dumps(row, separators=(",", ":"))
