"""The README and docs/: short enough to read, every page reachable, every relative link alive.

Links are read from the Markdown outside fenced blocks and inline code. A link's path is
relative to the page that holds it; a `#anchor` must name a heading of the target page, by
GitHub's slug rules (lowercase, spaces to '-', punctuation other than '-' and '_' dropped,
a repeated heading gets '-1', '-2', ...). No network: http(s) and mailto links are not followed.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*(?:\n[^`\n]+)*?`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_REF = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.I)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _prose(text: str) -> str:
    """The page without fenced blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _targets(page: Path) -> list[str]:
    prose = _prose(page.read_text(encoding="utf-8"))
    return LINK.findall(prose) + HTML_REF.findall(prose)


def _is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)) or target.startswith("//")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays, its URL goes
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters, digits and '_'
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, text in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(text)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def _resolve(page: Path, target: str) -> tuple[Path, str]:
    path, _, anchor = target.partition("#")
    file = page if not path else (page.parent / unquote(path)).resolve()
    return file, unquote(anchor)


def _broken(page: Path) -> list[str]:
    bad = []
    for target in _targets(page):
        if _is_external(target):
            continue
        file, anchor = _resolve(page, target)
        if not file.exists():
            bad.append(f"{target}: no such file {file}")
        elif anchor and file.suffix == ".md" and anchor.lower() not in anchors(file):
            bad.append(f"{target}: no heading '#{anchor}' in {file}")
    return bad


def test_slug_follows_github():
    assert slug("The paper's section 4, reproduced (`hlp reproduce`), under the recipe") == \
        "the-papers-section-4-reproduced-hlp-reproduce-under-the-recipe"
    assert slug("What the sweep found") == "what-the-sweep-found"
    assert slug("Data: `hlp data`") == "data-hlp-data"
    assert slug("model_file and co-av") == "model_file-and-co-av"


def test_the_checks_see_a_broken_link(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Two words\n\n```bash\n# not a heading\n```\n"
                                   "[ok](#two-words) [ok](b.md#b) [bad](#not-a-heading) [bad](c.md) "
                                   "![bad](img/x.png) `[code](nowhere.md)` [web](https://example.org)\n")
    (tmp_path / "b.md").write_text("# B\n")
    assert anchors(tmp_path / "a.md") == {"title", "two-words"}
    assert [message.split(":")[0] for message in _broken(tmp_path / "a.md")] == \
        ["#not-a-heading", "c.md", "img/x.png"]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_images_resolve(page):
    assert _broken(page) == []


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_docs_page_is_linked_from_the_readme_or_the_index():
    linked = set()
    for page in (README, DOCS / "README.md"):
        for target in _targets(page):
            if not _is_external(target):
                linked.add(_resolve(page, target)[0])
    pages = sorted(DOCS.rglob("*.md"))
    assert DOCS / "README.md" in pages
    assert [p.relative_to(ROOT) for p in pages if p.resolve() not in linked] == []


def test_readme_keeps_the_ci_test_command():
    """.ci/run runs 'the README's test command'; the README's first block ends with it."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    command = ci[ci.index("# The README's test command:") + 1].strip()
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    assert f"HLP_DATA_ROOT=../shared/data {command}" in first_block.splitlines()
