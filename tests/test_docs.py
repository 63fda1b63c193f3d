"""The documentation's relative links: the README links into docs/ by section, so a renamed heading or a moved
file must not leave a link that goes nowhere."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks/recbole/README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces
    to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache  # a file's headings are read once, however many links name it
def anchors(path: Path) -> frozenset[str]:
    """Every heading's anchor in a Markdown file; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            slug = github_anchor(match.group(1))
            count = seen.get(slug, 0)
            result.add(slug if count == 0 else f"{slug}-{count}")
            seen[slug] = count + 1
    return frozenset(result)


def test_github_anchor_matches_hand_made_examples():
    examples = {
        "Item inputs of `bbqrec`": "item-inputs-of-bbqrec",
        "Status: what is reconstructed, what is our choice": "status-what-is-reconstructed-what-is-our-choice",
        "Where the gains come from (popularity buckets)": "where-the-gains-come-from-popularity-buckets",
        "Three bit-identical changes since 2026-12-06": "three-bit-identical-changes-since-2026-12-06",
    }
    assert {heading: github_anchor(heading) for heading in examples} == examples


def test_anchors_number_repeated_headings(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Seeds\n\n```\n# not a heading\n```\n## Seeds\n### Other\n", encoding="utf-8")
    assert anchors(page) == {"seeds", "seeds-1", "other"}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_a_file_and_a_heading(document):
    broken = []
    for number, line in prose_lines(document.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto: ...: not checked offline
                continue
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists():
                broken.append(f"line {number}: {target} (no file {linked.relative_to(ROOT)})")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"line {number}: {target} (no heading with that anchor in {linked.name})")
    assert not broken, f"{document.relative_to(ROOT)}: " + "; ".join(broken)
