"""Reading NTSB exports: both column styles, their quirks, the label, and the errors."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from avsev.data import LEAKY_COLUMNS, DataError, load, load_frame
from avsev.serving.features import CANDIDATES, fit_spec
from avsev.serving.schema import AccidentReport

UNDERSCORE_HEADER = (
    "Event_Id,Accident_Number,Event_Date,LOCATION,Country,Latitude,Longitude,Injury_Severity,"
    "Aircraft_Category,Registration_Number,Make,Model,Amateur_Built,Number_of_Engines,"
    "Engine_Type,Purpose_of_flight,Air_carrier,Total_Fatal_Injuries,Total_Serious_Injuries,"
    "Total_Minor_Injuries,Total_Uninjured,Weather_Condition,Broad_phase_of_flight"
)


def write(tmp_path, text: str, encoding: str = "latin-1"):
    path = tmp_path / "export.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_real_file_reads_whole_with_labels_and_shares(real_data):
    # Given the real export, when loaded, then every row has a label and the README's shares
    assert len(real_data.frame) == 18_587
    shares = real_data.frame["severity"].value_counts(normalize=True)
    assert shares["None"] == pytest.approx(0.62, abs=0.02)
    assert shares["Fatal"] == pytest.approx(0.15, abs=0.02)
    assert shares["Minor"] == pytest.approx(0.14, abs=0.02)
    assert shares["Serious"] == pytest.approx(0.09, abs=0.02)
    dates = real_data.frame["event_date"]
    assert min(dates) >= dt.date(1979, 1, 1) and max(dates) <= dt.date(2019, 12, 31)
    assert real_data.dropped["dec_latitude"]["missing"] > 3000  # "Unknown" counted


def test_every_real_row_is_a_valid_accident_report(real_data):
    for row in real_data.reports():
        AccidentReport.model_validate(row)


def test_underscore_quirks_become_missing_and_are_counted(tmp_path):
    rows = [
        # mangled Event_Id, two-digit years both sides of 2000, Latin-1 make, odd case
        '2.02E+13,ERA05LA001,3/4/05,"X, FL",United States,28.5,-81.3,Non-Fatal,Airplane,N1,'
        "CESSNA,172,No,1,reciprocating,PERSONAL,,0,1,0,1,vmc,LANDING",
        '2.02E+13,LAX82FA002,12/31/82,"Y, CA",United States,-80911844,Unknown,Fatal,Airplane,N2,'
        "Société Aéro,X,Yes,Unknown,TJ, REC,Unknown,,2,0,0,0,IMC,Unknown",
        '20010101X00003,CHI01IA003,1/1/01,"Z, IL",United States,,  ,Incident,Airplane,N3,'
        "Piper,PA,No,9,Turbo Fan,Business,,0,0,0,3,UNK,Cruise",
    ]
    # the second row has an unquoted comma in Engine_Type: fix the column count by quoting
    rows[1] = rows[1].replace("TJ, REC", '"TJ, REC"')
    data = load(write(tmp_path, UNDERSCORE_HEADER + "\n" + "\n".join(rows) + "\n"))
    f = data.frame
    assert data.style == "underscore"
    assert list(f["ev_id"]) == ["ERA05LA001", "LAX82FA002", "CHI01IA003"]
    assert list(f["event_date"]) == [
        dt.date(2005, 3, 4),
        dt.date(1982, 12, 31),
        dt.date(2001, 1, 1),
    ]
    assert list(f["severity"]) == ["Serious", "Fatal", "None"]
    assert f["make"][0] == "cessna" and f["make"][1] == "société aéro"
    assert f["engine_type"][0] == "Reciprocating" and f["engine_type"][1] is None
    assert f["purpose_of_flight"][0] == "Personal"
    assert f["broad_phase_of_flight"][0] == "Landing"
    assert f["weather_condition"][0] == "VMC" and f["weather_condition"][2] is None
    assert pd.isna(f["dec_latitude"][1]) and pd.isna(f["number_of_engines"][2])
    assert f["amateur_built"][1] is True
    d = data.dropped
    assert d["event_id"]["spreadsheet-mangled (Accident_Number used as key)"] == 2
    assert d["dec_latitude"]["outside -90..90"] == 1
    assert d["number_of_engines"]["outside 0..8"] == 1
    assert d["engine_type"]["not a category of the export"] == 1


def test_dotted_export_with_iso_dates_and_extra_columns():
    frame = pd.DataFrame(
        {
            "Event.Id": ["20200101X00001", "20200102X00002"],
            "Investigation.Type": ["Accident", "Accident"],
            "Accident.Number": ["WPR20FA001", "CEN20LA002"],
            "Event.Date": ["2020-01-01", "2020-01-02"],
            "Latitude": ["364010N", "40.5"],
            "Longitude": ["1150512W", "-100.25"],
            "Injury.Severity": ["Fatal(1)", "Non-Fatal"],
            "Aircraft.damage": ["Destroyed", "Substantial"],
            "Make": ["Beech", "cessna"],
            "Amateur.Built": ["No", "Yes"],
            "Number.of.Engines": ["2", "1"],
            "Engine.Type": ["Turbo Prop", "Reciprocating"],
            "Purpose.of.flight": ["Business", "Air Race show"],
            "Total.Fatal.Injuries": ["1", ""],
            "Total.Serious.Injuries": ["0", ""],
            "Total.Minor.Injuries": ["0", "2"],
            "Total.Uninjured": ["0", "0"],
            "Weather.Condition": ["IMC", "Unk"],
            "Broad.phase.of.flight": ["Cruise", "Go-around"],
        }
    )
    data = load_frame(frame)
    f = data.frame
    assert data.style == "dotted"
    assert list(f["ev_id"]) == ["WPR20FA001", "CEN20LA002"]
    assert list(f["severity"]) == ["Fatal", "Minor"]
    assert f["dec_latitude"][0] == pytest.approx(36 + 40 / 60 + 10 / 3600)
    assert f["dec_longitude"][0] == pytest.approx(-(115 + 5 / 60 + 12 / 3600))
    assert f["purpose_of_flight"][1] == "Air Race/show"
    assert "aircraft_damage" not in f.columns  # read, never kept


def test_missing_required_column_names_file_and_column(tmp_path):
    header = UNDERSCORE_HEADER.replace("Total_Serious_Injuries,", "")
    path = write(tmp_path, header + "\n")
    with pytest.raises(DataError, match=r"export\.csv.*total_serious_injuries"):
        load(path)
    path = write(tmp_path, "Accident_Number,Make\nX1,Cessna\n")
    with pytest.raises(DataError, match=r"export\.csv.*Event_Date"):
        load(path)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"\x00\x01\x02binary", "binary"), (b"\n\n", "no header|empty")],
)
def test_unreadable_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load(path)


def test_no_label_defining_or_identifying_column_can_become_a_feature(real_data):
    # Given every candidate feature, none reads a label-defining or identifying column
    sources = {source for _, source, _, _ in CANDIDATES}
    assert not sources & LEAKY_COLUMNS
    # And when rows carry those columns (and a perfect copy of the label), fitting a spec
    # over them still never picks them up.
    rows = real_data.reports()[:2000]
    labels = list(real_data.frame["severity"][:2000])
    poisoned = [
        {
            **r,
            "severity": y,
            "injury_severity": y,
            "total_fatal_injuries": int(y == "Fatal"),
            "accident_number": r["ev_id"],
            "ev_id": r["ev_id"],
        }
        for r, y in zip(rows, labels, strict=True)
    ]
    spec = fit_spec(poisoned)
    assert not {f.source for f in spec.features} & (LEAKY_COLUMNS | {"ev_id"})
    assert spec.names  # and it did pick real features


def test_a_truncated_last_line_does_not_break_the_reader(tmp_path, real_data_path):
    # Given an export cut mid-line (an interrupted download)
    path = tmp_path / "cut.csv"
    path.write_bytes(real_data_path.read_bytes()[:150_000])
    data = load(path, require_label=False)
    # Then the rows before it are read, and the broken one's unreadable values are missing
    assert len(data.frame) > 500
    assert data.frame["event_date"].iloc[:-1].notna().all()
