"""The README renders as intended: every table row belongs to a table with a header row (a blank
line inside a table once cut it in two, and the second half rendered as plain text)."""

from __future__ import annotations

from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]


def table_lines(path: Path) -> tuple[set[int], list[int]]:
    text = path.read_text()
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    covered: set[int] = set()
    for token in tokens:
        if token.type == "table_open" and token.map:
            covered.update(range(*token.map))
    in_fence = False
    rows = []
    for number, line in enumerate(text.splitlines()):
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and line.startswith("|"):
            rows.append(number)
    return covered, rows


def test_every_table_row_of_the_docs_renders_inside_a_table() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        covered, rows = table_lines(doc)
        stray = [n + 1 for n in rows if n not in covered]
        assert not stray, f"{doc.name}: lines {stray} start with '|' but render outside a table"
