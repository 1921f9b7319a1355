"""The local stack's dashboard (`/dashboard`): live numbers in, the same numbers drawn.

A local stack with two model versions at 50/50 under the autopilot serves real NTSB rows;
their outcomes are posted, the A/B and drift jobs run; headless Chromium (Debian's
`chromium`, every host but loopback unreachable) opens the page, waits for its panels to draw
and the DOM must hold the numbers: the weights, the requests each version served, the
latencies the gateway measured, the A/B decision and its confidence intervals, the drift score
of every feature. The screenshot is kept in demo-output/dashboard.png."""

from __future__ import annotations

import datetime as dt
import html
import json
import random
import re
import urllib.request
from pathlib import Path

import boto3
import pytest
from avsev_tools.local.dashboard import Traffic, percentile, to_json
from browser import CHROMIUM, chromium

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 240
"""Single predictions sent at 50/50; then batches until the champion has scored this many rows."""
BATCH_UNTIL = 1000


# ---- the tallies, without a browser ---------------------------------------------------------
def test_percentile_is_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    values = [float(x) for x in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 95) == 95.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_traffic_counts_per_minute_and_version_and_forgets_old_minutes():
    now = [600.0 * 60]  # minute 600
    traffic = Traffic(keep_minutes=60, clock=lambda: now[0])
    for ms in (1.0, 2.0, 3.0, 4.0):
        traffic.record("predict", "1", ms, 200)
    traffic.record("predict", "2", 10.0, 500)
    traffic.record("explain", "1", 99.0, 200)  # another function: not in predict's series
    now[0] += 60  # the next minute
    traffic.record("predict", "1", 8.0, 200)
    s = traffic.series("predict", minutes=15)
    assert len(s["minutes"]) == 15 and s["minutes"][-1].endswith(":01+00:00")
    one, two = s["versions"]["1"], s["versions"]["2"]
    assert one["requests_per_minute"][-2:] == [4, 1] and sum(one["requests_per_minute"]) == 5
    assert one["p50_ms"][-2:] == [2.0, 8.0] and one["p95_ms"][-2:] == [4.0, 8.0]
    assert one["p50_ms"][0] is None  # no requests that minute: no percentile, not zero
    assert (one["requests"], one["window_p50_ms"], one["window_p95_ms"]) == (5, 3.0, 8.0)
    assert (two["requests"], two["errors"]) == (1, 1)
    now[0] += 61 * 60  # an hour later everything has aged out of memory
    traffic.record("predict", "1", 1.0, 200)
    assert (
        traffic._minutes[("predict", "2")] == {} or "2" not in traffic.series("predict")["versions"]
    )
    assert traffic.series("predict")["versions"]["1"]["requests"] == 1


def test_json_has_no_nan():
    assert json.loads(to_json({"p": float("nan"), "ci": (float("inf"), 1.0)})) == {
        "p": None,
        "ci": [None, 1.0],
    }


# ---- the page, in a browser ------------------------------------------------------------------
def post(stack, path: str, body: object) -> tuple[int, dict, str]:
    request = urllib.request.Request(
        f"{stack.base_url}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-Api-Key": stack.api_key},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.status, json.loads(r.read()), r.headers.get("X-Model-Version", "")


@pytest.fixture(scope="module")
def live(stack, real_data):
    """Traffic at 50/50 under the autopilot, outcomes, then the A/B and drift jobs."""
    from avsev.monitoring.jobs import Clients, rollup_with_duckdb, run_ab_analysis, run_drift_check
    from avsev.rollout.autopilot import autopilot_for

    BUCKET = stack.bucket  # the stack's data bucket, from its template
    pilot = autopilot_for(
        lambda_client=boto3.client("lambda"), s3=boto3.client("s3"), bucket=BUCKET,
        function=stack.functions["predict"],
    )  # fmt: skip
    # the deploy of the second bundle handed version 2 to the autopilot: 10%, its first step ...
    assert pilot.status()["candidate_version"] == "2"
    pilot.r.step(0.5)  # ... and on to 50% (as its next tick would on evidence)

    rows, labels = real_data.reports(), list(real_data.frame["severity"])
    picked = random.Random(7).sample(range(len(rows)), REQUESTS)
    served = {"1": 0, "2": 0}
    served_by: dict[int, str] = {}

    def jsonable(i: int) -> dict:
        return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in rows[i].items()}

    for i in picked:
        status, _, model = post(stack, "/predict", jsonable(i))
        assert status == 200
        served_by[i] = {"1.0.0": "1", "1.1.0": "2"}[model]
        served[served_by[i]] += 1
    # Batches of 500 until the champion has scored more than 1,000 rows: the drift check then
    # measures distances (threshold 0.1) rather than running tests
    rest = [i for i in random.Random(8).sample(range(len(rows)), 6000) if i not in set(picked)]
    champion_rows = sum(1 for i in picked if served_by[i] == "1")
    while champion_rows <= BATCH_UNTIL:
        chunk, rest = rest[:500], rest[500:]
        status, _, model = post(stack, "/predict/batch", {"reports": [jsonable(i) for i in chunk]})
        assert status == 200
        version = {"1.0.0": "1", "1.1.0": "2"}[model]
        served[version] += 1
        champion_rows += len(chunk) * (version == "1")
        picked += chunk
    for start in range(0, len(picked), 500):
        outcomes = [
            {"ev_id": rows[i]["ev_id"], "actual_severity": labels[i]}
            for i in picked[start : start + 500]
        ]
        assert post(stack, "/outcomes", {"outcomes": outcomes})[0] == 200
    stack.flush()

    s3, cw, sns = (boto3.client(n) for n in ("s3", "cloudwatch", "sns"))
    clients = Clients(s3, cw, sns)
    now = dt.datetime.now(dt.UTC)
    rollup_with_duckdb(s3, BUCKET, stack.cards[0], now)
    ab = run_ab_analysis(clients, BUCKET, now, champion="1.0.0", candidate="1.1.0").report
    drift = run_drift_check(clients, BUCKET, stack.cards[0], now).report
    return {"served": served, "ab": ab, "drift": drift}


def text_of(dom: str, attribute: str, value: str) -> str:
    """The text of the element with attribute="value" in the dumped DOM."""
    m = re.search(rf'<(\w+)[^>]*\b{attribute}="{re.escape(value)}"[^>]*>([^<]*)</\1>', dom)
    assert m, f"no element with {attribute}={value!r} drawn"
    return html.unescape(m.group(2))


def signed(x: float, digits: int) -> str:
    return ("+" if x >= 0 else "−") + f"{abs(x):.{digits}f}"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make sysdeps)")
def test_chromium_draws_the_live_numbers(stack, live, tmp_path):
    served, ab, drift = live["served"], live["ab"], live["drift"]
    assert sum(served.values()) > REQUESTS and min(served.values()) > 60  # really 50/50

    dom = chromium(f"{stack.base_url}/dashboard", tmp_path / "p1", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    drawn = re.search(r'<body data-drawn="(\d+)"', page)
    assert drawn and int(drawn.group(1)) >= 1, page[:1500]  # the script ran and drew
    drawn_part = page.split("<script>")[0]  # the DOM the script drew, not its own text
    assert 'class="error"' not in drawn_part and "cannot reach" not in drawn_part, drawn_part

    # alias weights and the autopilot's step
    assert text_of(page, "data-weight-version", "1") == "50%"
    assert text_of(page, "data-weight-version", "2") == "50%"
    assert text_of(page, "id", "autopilot-step") == "step 50%"
    history = re.search(r'<table id="alias-history">(.*?)</table>', page).group(1)
    rows = [re.sub(r"<[^>]+>", "|", r) for r in re.findall(r"<tr>(.*?)</tr>", history)][1:]
    # newest first; the deploy of version 2 handed it to the autopilot, which started it
    assert [r.split("|")[3] for r in rows] == ["step", "autopilot-start", "start", "handover"]
    assert "v1 50%, v2 50%" in rows[0] and "v1 90%, v2 10%" in rows[2]
    # the 50% step holds at least 30 minutes: that is what the autopilot waits for now
    assert text_of(page, "id", "autopilot-waiting").startswith("the minimum hold (")

    # requests per version: exactly what each version served; latency as the gateway measured
    for version, count in served.items():
        assert text_of(page, "data-requests-version", version) == str(count)
    series = stack.traffic.series("predict")["versions"]
    for version in served:
        assert (
            text_of(page, "data-p50-version", version) == f"{series[version]['window_p50_ms']:.2f}"
        )
        assert (
            text_of(page, "data-p95-version", version) == f"{series[version]['window_p95_ms']:.2f}"
        )

    # the A/B decision and its confidence intervals, as the report says
    assert text_of(page, "id", "ab-decision") == ab.decision
    assert text_of(page, "id", "ab-reason") == ab.reason
    c = ab.comparison
    lo, hi = c.accuracy_delta_ci95
    assert text_of(page, "data-ci", "accuracy_delta") == f"[{signed(lo, 4)}, {signed(hi, 4)}]"
    lo, hi = c.weighted_f1_delta_ci95
    assert text_of(page, "data-ci", "weighted_f1_delta") == f"[{signed(lo, 4)}, {signed(hi, 4)}]"
    assert text_of(page, "data-ab", "always_valid_p") == f"{c.always_valid_p:#.3g}"
    for model in ("1.0.0", "1.1.0"):
        f1 = ab.versions[model].weighted_f1
        assert text_of(page, "data-ab", f"f1:{model}") == f"{f1:.4f}"

    # drift per feature: every feature of the report, with its score
    assert drift.status == "checked" and drift.rows > BATCH_UNTIL and drift.features
    for name, f in drift.features.items():
        assert text_of(page, "data-drift-feature", name) == f"{f.score:.3f}"

    shot = ROOT / "demo-output" / "dashboard.png"
    shot.parent.mkdir(exist_ok=True)
    shot.unlink(missing_ok=True)
    out = chromium(
        f"{stack.base_url}/dashboard",
        tmp_path / "p2",
        f"--screenshot={shot}",
        "--window-size=1280,1260",
    )
    assert out.returncode == 0 and shot.stat().st_size > 30_000, out.stderr[-2000:]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make sysdeps)")
def test_the_page_shows_the_retraining_loop_paused_and_by_whom(stack, live, tmp_path):
    import boto3
    from avsev.rollout.lifecycle import Lifecycle

    loop = Lifecycle(boto3.client("s3"), stack.bucket)
    page = chromium(f"{stack.base_url}/dashboard", tmp_path / "p0", "--dump-dom").stdout
    assert "Retraining loop: watching" in page and "(no run yet)" in page
    loop.pause("label feed broken", by="alice")
    try:
        page = chromium(f"{stack.base_url}/dashboard", tmp_path / "p2", "--dump-dom").stdout
        line = re.search(r'<p id="retraining">(.*?)</p>', page).group(1)
        text = html.unescape(re.sub(r"<[^>]+>", "", line))
        assert text == "Retraining loop: paused by alice: label feed broken"
    finally:
        loop.resume(by="alice")


def test_the_page_loads_nothing_from_elsewhere(stack):
    with urllib.request.urlopen(f"{stack.base_url}/dashboard", timeout=30) as r:
        page = r.read().decode()
    assert r.headers["Content-Type"].startswith("text/html")
    assert not re.findall(r'(?:src|href)="(?!/)[^"]+"', page)  # no CDN, no external script
    with urllib.request.urlopen(f"{stack.base_url}/_local/dashboard.json", timeout=30) as r:
        data = json.loads(r.read())
    assert set(data) >= {"alias", "autopilot", "traffic", "ab", "drift"}
