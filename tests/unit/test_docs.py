"""The documentation a newcomer reads: a short README whose first screen holds the system's
picture and the two commands, every topic one working link away, and pages that say what the
system is rather than how it came to be."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]

FIRST_SCREEN = 40
MAX_README_LINES = 250

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HISTORY = [
    re.compile(r"\bissues?\s+#?\d+", re.IGNORECASE),
    re.compile(r"(?<![\w&/#])#\d+\b"),
    re.compile(r"\blast session\b", re.IGNORECASE),
    re.compile(r"\b(?:an |the )?earlier run\b", re.IGNORECASE),
    re.compile(r"\b(?:the |a )?run before\b", re.IGNORECASE),
    re.compile(r"\bprevious (?:run|session)\b", re.IGNORECASE),
]


def fenced_blocks(lines: list[str]) -> list[tuple[int, int, str]]:
    """(first line, last line, text) of each fenced code block, 0-based, fences included."""
    blocks, start = [], None
    for i, line in enumerate(lines):
        if FENCE.match(line.strip()):
            if start is None:
                start = i
            else:
                blocks.append((start, i, "\n".join(lines[start : i + 1])))
                start = None
    return blocks


def prose(text: str) -> str:
    """The page without its fenced code blocks (where `[a](b)` is not a link)."""
    lines = text.splitlines()
    inside: set[int] = set()
    for first, last, _ in fenced_blocks(lines):
        inside.update(range(first, last + 1))
    return "\n".join(line for i, line in enumerate(lines) if i not in inside)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose(page.read_text()).splitlines():
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(page.read_text()))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)  # http:, mailto:, ...
    ]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    return broken


def history(text: str) -> list[str]:
    return [m.group(0) for pattern in HISTORY for m in pattern.finditer(text)]


def test_the_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines; keep it to {MAX_README_LINES} and move detail to docs/"
    )


def test_the_first_screen_holds_the_two_commands_and_the_picture():
    lines = README.read_text().splitlines()
    screen = "\n".join(lines[:FIRST_SCREEN])
    assert "make demo" in screen and "make test" in screen
    pictures = [
        text
        for first, last, text in fenced_blocks(lines)
        if last < FIRST_SCREEN
        and all(word in text for word in ("API Gateway", "live", "Firehose", "autopilot"))
    ]
    assert pictures, (
        f"no diagram of the system (API Gateway, alias live, Firehose, autopilot) in a fenced "
        f"block within the first {FIRST_SCREEN} lines of README.md"
    )


def test_every_topic_is_one_link_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in relative_links(README)}
    for page in PAGES[1:]:
        assert page.resolve() in linked, f"README.md does not link {page.relative_to(ROOT)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert page.exists()
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_docs_tell_what_the_system_is_not_its_history(page):
    assert history(page.read_text()) == []


def test_the_checks_find_what_they_look_for(tmp_path):
    """The helpers catch a broken link, a missing anchor and development history."""
    (tmp_path / "a.md").write_text("# Title\n\n## A/B (hourly)\n\ntext\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md) [ok](a.md#ab-hourly) [web](https://example.com) [self](#b)\n"
        "[gone](missing.md) [no anchor](a.md#nowhere)\n\n## B\n\n"
        "```\n[not a link](ignored.md)\n```\n"
        "Fixed in issue 12 (#34); in the run before, last session, an earlier run.\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "a.md#nowhere: no heading #nowhere in a.md",
    ]
    assert len(history(page.read_text())) == 5
    assert slug("Drift (daily, and `avsev drift` offline)") == "drift-daily-and-avsev-drift-offline"
    assert slug("The model registry: what may serve") == "the-model-registry-what-may-serve"
