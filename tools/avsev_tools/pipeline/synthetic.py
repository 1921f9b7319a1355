"""A synthetic NTSB-like data set: every `AccidentReport` field, deterministic by seed.

Severity follows a hidden risk score built from plausible effects (instrument weather,
manoeuvring and cruise phases, loss-of-control occurrences, low pilot experience, old
aircraft, amateur builds raise it; taxi and standing lower it), plus noise, cut at the
real class shares (None 62%, Minor 14%, Serious 9%, Fatal 15%).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from avsev.data import LoadedData, load_frame

CLASS_SHARES = {"None": 0.62, "Minor": 0.14, "Serious": 0.09, "Fatal": 0.15}
"""Real shares, lowest severity first (the order of the cut points)."""

MAKES = {
    "cessna": 0.37,
    "piper": 0.21,
    "beech": 0.07,
    "boeing": 0.02,
    "mooney": 0.02,
    "bellanca": 0.015,
    "grumman": 0.012,
    "maule": 0.011,
    "aeronca": 0.011,
    "air tractor": 0.018,
    "cirrus design corp": 0.013,
    "luscombe": 0.008,
    "champion": 0.008,
    "stinson": 0.007,
    "taylorcraft": 0.006,
    "north american": 0.006,
    "embraer": 0.005,
    "airbus": 0.004,
    "de havilland": 0.008,
}
PHASES = {
    "Landing": 0.33,
    "Takeoff": 0.20,
    "Approach": 0.09,
    "Maneuvering": 0.085,
    "Cruise": 0.065,
    "Taxi": 0.036,
    "Descent": 0.026,
    "Go-around": 0.022,
    "Climb": 0.02,
    "Standing": 0.017,
    "Other": 0.003,
}
PHASE_RISK = {
    "Landing": -0.8,
    "Takeoff": 0.0,
    "Approach": 0.4,
    "Maneuvering": 1.0,
    "Cruise": 0.6,
    "Taxi": -1.3,
    "Descent": 0.5,
    "Go-around": 0.2,
    "Climb": 0.5,
    "Standing": -1.5,
    "Other": 0.0,
}
PHASE_CODE_BASE = {
    "Standing": 500,
    "Taxi": 510,
    "Takeoff": 520,
    "Climb": 530,
    "Cruise": 540,
    "Descent": 550,
    "Approach": 560,
    "Landing": 570,
    "Maneuvering": 580,
    "Go-around": 590,
    "Other": 600,
}
PURPOSES = {
    "Personal": 0.62,
    "Instructional": 0.15,
    "Aerial Application": 0.05,
    "Business": 0.04,
    "Positioning": 0.02,
    "Skydiving": 0.01,
    "Ferry": 0.01,
    "Aerial Observation": 0.01,
    "Executive/corporate": 0.01,
    "Other Work Use": 0.01,
    "Flight Test": 0.01,
    "Banner Tow": 0.005,
    "Public Aircraft": 0.005,
}
PURPOSE_RISK = {
    "Instructional": -0.4,
    "Aerial Application": 0.3,
    "Business": 0.2,
    "Skydiving": 0.2,
    "Flight Test": 0.3,
}
OCCURRENCE_BANDS = (
    (100, 179, 0.35, 0.0),
    (200, 259, 0.25, 0.7),
    (260, 290, 0.1, 0.3),
    (300, 370, 0.15, -0.3),
    (380, 390, 0.05, 0.2),
    (400, 430, 0.1, -0.2),
)
"""(first code, last code, share, risk)."""


def _choice(rng: np.random.Generator, table: dict[str, float], n: int) -> np.ndarray:
    names = list(table)
    p = np.array([table[k] for k in names], dtype=float)
    return rng.choice(np.array(names, dtype=object), size=n, p=p / p.sum())


def _hide(rng: np.random.Generator, values: np.ndarray, rate: float) -> np.ndarray:
    out = values.astype(object)
    out[rng.random(len(values)) < rate] = None
    return out


def generate_frame(n: int = 20_000, *, seed: int = 0) -> pd.DataFrame:
    """`n` synthetic accidents as a canonical-style frame (strings, like a CSV read)."""
    rng = np.random.default_rng(seed)
    start = dt.date(1982, 1, 1).toordinal()
    end = dt.date(2023, 12, 31).toordinal()
    dates = np.array(
        [dt.date.fromordinal(int(d)).isoformat() for d in np.sort(rng.integers(start, end, n))]
    )
    engines = rng.choice([0, 1, 2, 3, 4], size=n, p=[0.003, 0.84, 0.14, 0.007, 0.01])
    engine_type = np.where(
        engines <= 1,
        rng.choice(["Reciprocating", "Turbo Prop"], size=n, p=[0.95, 0.05]),
        rng.choice(
            ["Reciprocating", "Turbo Prop", "Turbo Fan", "Turbo Jet"],
            size=n,
            p=[0.55, 0.25, 0.15, 0.05],
        ),
    ).astype(object)
    engine_type[engines >= 3] = "Turbo Fan"
    phase = _choice(rng, PHASES, n)
    phase_code = np.array([PHASE_CODE_BASE[p] for p in phase]) + rng.integers(0, 10, n)
    purpose = _choice(rng, PURPOSES, n)
    weather = rng.choice(["VMC", "IMC"], size=n, p=[0.93, 0.07])
    band = rng.choice(len(OCCURRENCE_BANDS), size=n, p=[b[2] for b in OCCURRENCE_BANDS])
    occurrence = np.array(
        [rng.integers(OCCURRENCE_BANDS[b][0], OCCURRENCE_BANDS[b][1] + 1) for b in band]
    )
    make = _choice(rng, MAKES, n)
    tail = rng.random(n) < 0.08
    make[tail] = [f"homebuilt works {k}" for k in rng.integers(0, 400, tail.sum())]
    amateur = rng.random(n) < 0.09
    age = np.clip(rng.gamma(4.0, 7.0, n).round(), 0, 100).astype(int)
    tot = np.clip(rng.lognormal(np.log(900), 1.1, n), 5, 50_000).round(1)
    recent = np.minimum(np.clip(rng.lognormal(np.log(25), 0.9, n), 0, 500), tot).round(1)
    lat = np.clip(rng.normal(38.5, 6.5, n), 18, 71).round(5)
    lon = np.clip(rng.normal(-96, 17, n), -170, -66).round(5)

    risk = (
        np.array([PHASE_RISK[p] for p in phase])
        + np.where(weather == "IMC", 1.3, 0.0)
        + np.array([OCCURRENCE_BANDS[b][3] for b in band])
        + np.array([PURPOSE_RISK.get(p, 0.0) for p in purpose])
        + 0.012 * age
        - 0.3 * np.log(tot / 900)
        - 0.15 * np.log1p(recent / 25)
        + np.where(amateur, 0.4, 0.0)
        + np.where(engines >= 2, 0.25, 0.0)
        + 0.15 * np.sin(np.radians(lat) * 6)
        + rng.logistic(0.0, 0.9, n)
    )
    cuts = np.quantile(risk, np.cumsum(list(CLASS_SHARES.values()))[:-1])
    severity = np.array(list(CLASS_SHARES), dtype=object)[np.searchsorted(cuts, risk)]

    frame = pd.DataFrame(
        {
            "ev_id": [f"SYN{seed:04d}{i:07d}" for i in range(n)],
            "event_date": dates,
            "dec_latitude": _hide(rng, lat, 0.15),
            "dec_longitude": _hide(rng, lon, 0.15),
            "aircraft_age": _hide(rng, age, 0.05),
            "pilot_tot_time": _hide(rng, tot, 0.05),
            "pilot_90_days": _hide(rng, recent, 0.08),
            "phase_code": _hide(rng, phase_code, 0.05),
            "occurrence_code": _hide(rng, occurrence, 0.04),
            "number_of_engines": _hide(rng, engines, 0.02),
            "engine_type": _hide(rng, engine_type, 0.02),
            "purpose_of_flight": _hide(rng, purpose, 0.09),
            "broad_phase_of_flight": _hide(rng, phase, 0.1),
            "weather_condition": _hide(rng, weather, 0.02),
            "make": make,
            "amateur_built": np.where(amateur, "Yes", "No"),
            "severity": severity,
        }
    )
    return frame.map(lambda v: "" if v is None else str(v))


def generate(n: int = 20_000, *, seed: int = 0) -> LoadedData:
    """`n` synthetic accidents, read through the same loader as a real file."""
    data = load_frame(generate_frame(n, seed=seed), path=f"<synthetic n={n} seed={seed}>")
    data.style = "synthetic"
    return data
