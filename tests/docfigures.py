"""What counts as a measured figure in README.md and docs/*.md (tests/test_docs.py).

A figure is, in prose or a table outside a results block (alphavil/workflow/docs.py), a
fenced code block and an inline code span:
  - a number with a decimal point (0.05, 86.04), unless it is a version (after python,
    torch, dvc, CUDA, v, or with two dots), a section or equation number (after §, section,
    table, figure, eq., arXiv) or in a link target;
  - any number followed by a unit: %, pp, ×/x, s, ms, min, minutes, seconds, h, hours,
    KiB/MiB/GiB, kB/MB/GB, it/s;
  - a fraction of seeds or runs: digits/digits (`8/10`) or `9 of 10 seeds`;
  - ± between numbers.
Not figures: integers counting configuration (5 seeds, 3 epochs, 3,000 images), params values
in code spans (`alpha.lr: 0.05`), dates, and the paper's published numbers on a line that
cites them with the marker `[^paper]`. ALLOWED lists the few remaining non-measurements.
"""

from __future__ import annotations

import re

NUM = r"\d[\d,]*(?:\.\d+)?"
UNIT = (r"(?:%|\s?pp\b|\s?[×x](?!\s*\d)(?![\w])|\s?(?:ms|s|min|minutes?|seconds?|h|hours?|KiB|MiB|GiB"
        r"|kB|MB|GB|it/s)\b)")
FIGURE = re.compile(
    rf"(?<![\w.\-/])(?:{NUM}{UNIT}|\d+\.\d+|\d+/\d+(?=\s*(?:seeds|runs|of|\)|,|\.|;|$))"
    rf"|\d+ of \d+ (?:seeds|runs)|{NUM}\s*±\s*{NUM})")
VERSION = re.compile(r"(?:python|torch|dvc|cuda|cudnn|version|v|≥|>=|§|section|table|figure|eq\.|"
                     r"arxiv|snli|by-sa|by)\s*$", re.I)
# non-measurements that the rule above would flag: definitions and fixed limits
ALLOWED = (
    "0.5 is chance", "½ is chance", "1 = a perfect ranking",
    # a confidence level, not a measured number
    "95% t interval", "95% t CI", "95% CI", "95% interval",
)

RESULTS = re.compile(r"<!-- results: .*? -->.*?<!-- /results -->", re.S)
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\]\([^)]*\)|<[^>\n]*>|https?://\S+")
COMMENT = re.compile(r"<!--.*?-->", re.S)


def prose(text: str) -> str:
    """The text with results blocks, code, links and comments blanked (newlines kept, so a
    hit's line number is the file's)."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))
    for pattern in (RESULTS, FENCE, COMMENT, CODE, LINK):
        text = pattern.sub(blank, text)
    return text


def figures(text: str) -> list[tuple[int, str, str]]:
    """(line number, figure, line) of each measured figure outside results blocks."""
    out = []
    for i, line in enumerate(prose(text).splitlines(), 1):
        if "[^paper]" in text.splitlines()[i - 1]:
            continue
        for allowed in ALLOWED:
            line = line.replace(allowed, " " * len(allowed))
        for m in FIGURE.finditer(line):
            if re.fullmatch(r"\d+\.\d+", m.group(0)) and (
                    VERSION.search(line[:m.start()]) or line[m.end():m.end() + 2][:1] == "."
                    and line[m.end() + 1:m.end() + 2].isdigit()):
                continue
            out.append((i, m.group(0), text.splitlines()[i - 1].strip()))
    return out
