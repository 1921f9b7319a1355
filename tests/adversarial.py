"""The real export with adversarial cells: what a careless or hostile file holds; and, for
the batch function, hypothesis strategies of hostile files and misshapen events."""

from __future__ import annotations

import copy
import io
import json
import random
from typing import Any

import pandas as pd
from avsev.data import default_data_path, read_bytes
from hypothesis import strategies as st

ODD_CELLS = [
    *["", " ", "\t", " unknown ", "UNK", "N/A", "na", "None", "NONE", "none given"],
    *["1_000", "1,000", "inf", "-inf", "nan", "NaN", "1e3", "0x10", "  12 ", "abc", "+5", "5."],
    *[".5", "1e-320", "-0", "12.5", "-5", "99999999", "0", "2.0", "8", "8.0", "100", "101"],
    *["150", "179", "180", "430", "431", "500", "620", "621", "45.5", "-91", "181", "-180"],
    *["50000", "50000.1", "499.9", "501", "3810000N", "1234567W", "12345678S"],
    *["Turbo-prop", "turboprop", "Turbo  Prop", "VMC ", "imc", "Go Around", "go_around"],
    *["Air Race show", "  PERSONAL  ", "Yes", "y", "TRUE", "maybe", "é", "Société"],
    *["x" * 64, "x" * 65, "Cessna" * 20],
    *["13/45/2020", "2/29/2021", "2/29/2020", "2030-01-01", "1/1/99", "1/1/05", "12/31/9999"],
    *["0/0/00", "1/1/2019", "2019-12-31", "2019-13-01", "11/26/26"],
]

EXTRA_FIELDS = ("pilot_tot_time", "pilot_90_days", "aircraft_age", "phase_code", "occurrence_code")
"""Report fields the public export lacks (this project's own column style has them)."""


def real_export() -> pd.DataFrame:
    text = read_bytes(default_data_path()).decode("latin-1")
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def adversarial_export(*, seed: int, share: float, rows: int | None = None) -> pd.DataFrame:
    """The real export (first `rows`), the report fields it lacks added with plausible
    values, then `share` of all cells replaced by odd ones or by another row's value."""
    rng = random.Random(seed)
    frame = real_export()
    frame = frame.iloc[:rows].copy() if rows else frame.copy()
    n = len(frame)
    frame["pilot_tot_time"] = [str(rng.choice([0, 12, 150, 800, 4000, 20000])) for _ in range(n)]
    frame["pilot_90_days"] = [str(rng.choice([0, 5, 40, 150, 300])) for _ in range(n)]
    frame["aircraft_age"] = [str(rng.randrange(0, 60)) for _ in range(n)]
    frame["phase_code"] = [str(rng.choice([500, 520, 570, 600])) for _ in range(n)]
    frame["occurrence_code"] = [str(rng.choice([100, 220, 250, 300, 350, 400])) for _ in range(n)]
    for column in frame.columns:
        cells = frame[column].tolist()
        for i in range(n):
            if rng.random() < share:
                cells[i] = rng.choice([*ODD_CELLS, cells[rng.randrange(n)]])
        frame[column] = cells
    return frame


# ---- batch files and events: what a hostile upload or a misrouted event holds ---------------

EXPORT_HEADER = [
    "Event_Id",
    "Accident_Number",
    "Event_Date",
    "LOCATION",
    "Country",
    "Latitude",
    "Longitude",
    "Injury_Severity",
    "Aircraft_Category",
    "Registration_Number",
    "Make",
    "Model",
    "Amateur_Built",
    "Number_of_Engines",
    "Engine_Type",
    "Purpose_of_flight",
    "Air_carrier",
    "Total_Fatal_Injuries",
    "Total_Serious_Injuries",
    "Total_Minor_Injuries",
    "Total_Uninjured",
    "Weather_Condition",
    "Broad_phase_of_flight",
]
"""The public export's columns (the first line of the shipped file)."""
REPORT_KEYS = [
    "ev_id",
    "make",
    "aircraft_age",
    "weather_condition",
    "event_date",
    *EXTRA_FIELDS,
    "x",
]
FILE_NAMES = ["f.csv", "f.jsonl", "f.json", "f.ndjson", "f.CSV", "f.txt", "f"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(ODD_CELLS),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
cells = st.sampled_from(ODD_CELLS) | st.text(max_size=12) | st.just('"') | st.just("\r")


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """An export-like CSV: some of its columns (or others), odd cells, any line ending, a
    quote left open now and then."""
    header = draw(
        st.lists(st.sampled_from(EXPORT_HEADER) | st.text(max_size=8), min_size=1, max_size=12)
    )
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(header) + 2), max_size=12))
    sep = draw(st.sampled_from([",", ",", ";", "\t"]))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = end.join(sep.join(r) for r in [header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-8-sig", "utf-16"]))
    return text.encode(encoding, "replace")


depths = st.sampled_from([2, 32, 33, 999, 1000, 5000, 200_000]) | st.integers(1, 200_000)
"""How deep a line nests: around the reader's limit and the parser's, and anything."""


@st.composite
def jsonl_files(draw: st.DrawFn) -> bytes:
    """JSON lines: reports with odd values, other JSON, broken lines, deep or huge lines."""
    line = st.one_of(
        st.dictionaries(st.sampled_from(REPORT_KEYS), json_values, max_size=6).map(json.dumps),
        json_values.map(json.dumps),
        st.text(max_size=30),
        depths.map(lambda n: "[" * n + "]" * n),
        depths.map(lambda n: '{"ev_id": "A1", "make": ' + "[" * n),
        st.integers(1, 300_000).map(lambda n: '{"ev_id": "A1", "make": "' + "x" * n + '"}'),
    )
    lines = draw(st.lists(line, max_size=8))
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines).encode("utf-8", "surrogatepass")


batch_files = st.tuples(
    st.sampled_from(FILE_NAMES),
    st.one_of(
        st.binary(max_size=2000),
        csv_files(),
        jsonl_files(),
        st.integers(0, 300_000).map(lambda n: b"Event_Id,Event_Date\n" + b"1" * n),
    ),
)
"""(file name, bytes): random bytes, CSV and JSON-lines shapes, huge and nested lines."""


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(event: Any, path: tuple[Any, ...], action: str, value: Any) -> None:
    parent = event
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif isinstance(parent[last], str):  # "json": a JSON text (an SQS body, an SNS message)
        try:
            inner = json.loads(parent[last])
        except ValueError:
            return
        spots = _paths(inner)
        if spots:
            _mutate(inner, spots[len(spots) // 2], "replace", value)
        parent[last] = json.dumps(inner)


@st.composite
def mutated_events(draw: st.DrawFn, samples: list[dict[str, Any]]) -> Any:
    """One of `samples` with a few values replaced by odd JSON, keys deleted, or the JSON
    text it carries mutated; now and then something else entirely."""
    if draw(st.integers(0, 9)) == 0:
        return draw(
            json_values
            | st.dictionaries(
                st.sampled_from(
                    [
                        "Records",
                        "detail-type",
                        "source",
                        "detail",
                        "time",
                        "version",
                        "Event",
                        "Type",
                        "Message",
                        "avsev_continuation",
                    ]
                ),
                json_values,
                max_size=5,
            )
        )
    event = copy.deepcopy(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(0, 4))):
        spots = _paths(event)
        if not spots:
            break
        path = draw(st.sampled_from(spots))
        _mutate(
            event, path, draw(st.sampled_from(["delete", "replace", "json"])), draw(json_values)
        )
    return event
