"""The docs stand alone: every link resolves inside the repository, none leaves it.

Checked in README.md, docs/*.md and each top-level folder's README.md: a
relative link must name an existing file (and an existing heading, when it
has a `#fragment` into a Markdown page) without climbing out of the repository;
an absolute path or a URL is refused (ALLOWED_HOSTS is empty: nothing we
document lives elsewhere). Fenced code and inline code are examples, not links.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Public sites a doc may link to; none so far.
ALLOWED_HOSTS: frozenset[str] = frozenset()

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
_AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]+)>")
_BARE_URL = re.compile(r"\b(?:https?|ftp)://[^\s)>\]]+")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def doc_pages() -> list[Path]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pages += sorted(p for p in ROOT.glob("*/README.md") if not p.parent.name.startswith("."))
    return [p for p in pages if p.is_file()]


def prose(text: str) -> str:
    """The text with fenced code blocks and inline code spans blanked out."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def link_targets(text: str) -> list[str]:
    """Every link target in the prose of a Markdown text, bare URLs included."""
    body = prose(text)
    found = [m.group(1) for m in _INLINE_LINK.finditer(body)]
    found += [m.group(1) for m in _REFERENCE.finditer(body)]
    found += [m.group(1) for m in _AUTOLINK.finditer(body)]
    without_links = _AUTOLINK.sub("", _REFERENCE.sub("", _INLINE_LINK.sub("", body)))
    found += _BARE_URL.findall(without_links)
    return found


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = _CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {anchor(m.group(1)) for m in _HEADING.finditer(_FENCE.sub("", page.read_text()))}


def link_problem(page: Path, target: str, root: Path = ROOT) -> str | None:
    """Why `target`, linked from `page`, is not a link inside the repository; None if it is."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        if parts.scheme in ("http", "https") and parts.hostname in ALLOWED_HOSTS:
            return None
        return "points outside the repository"
    if parts.path.startswith("/"):
        return "is an absolute path"
    resolved = (page.parent / unquote(parts.path)).resolve() if parts.path else page.resolve()
    if not resolved.is_relative_to(root.resolve()):
        return "climbs out of the repository"
    if not resolved.exists():
        return "names no file"
    if parts.fragment and resolved.suffix == ".md" and parts.fragment not in anchors(resolved):
        return f"names no heading #{parts.fragment} in {resolved.name}"
    return None


def test_the_pages_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in doc_pages()}
    expected = {"api", "architecture", "benchmarks", "health-stream", "operations", "performance"}
    assert {"README.md", *(f"docs/{name}.md" for name in expected)} <= names


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_stays_inside_the_repository(page: Path) -> None:
    problems = [
        f"{target}: {problem}"
        for target in link_targets(page.read_text())
        if (problem := link_problem(page, target)) is not None
    ]
    assert problems == []


def test_the_readme_links_each_docs_page() -> None:
    linked = {urlsplit(t).path for t in link_targets((ROOT / "README.md").read_text())}
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set()


# ---- the checker itself catches what it should ----------------------------------------


def test_links_are_found_in_prose_only() -> None:
    text = (
        "See [api](docs/api.md#limits), [ref][r] and <https://example.org/x>.\n"
        "[r]: ../outside.md\n"
        "Bare https://example.com/spec too.\n"
        "`[not](a-link.md)` and `https://in-code.example`\n"
        "```sh\ncurl http://127.0.0.1:1/ [x](y.md)\n```\n"
    )
    assert link_targets(text) == [
        "docs/api.md#limits",
        "../outside.md",
        "https://example.org/x",
        "https://example.com/spec",
    ]


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("https://example.com/spec.md", "points outside the repository"),
        ("../../notes.md", "climbs out of the repository"),
        ("/etc/hosts", "is an absolute path"),
        ("missing.md", "names no file"),
        ("docs/api.md#no-such-heading", "names no heading #no-such-heading in api.md"),
        ("docs/api.md#limits", None),
        ("#set-up", None),
    ],
)
def test_link_problems_are_named(target: str, problem: str | None) -> None:
    assert link_problem(ROOT / "README.md", target) == problem


def test_anchors_follow_github() -> None:
    assert anchor("`leasehold watch`") == "leasehold-watch"
    assert anchor("Leases: CreateLease (v2 and v0)") == "leases-createlease-v2-and-v0"
    assert anchor("Gateway and process") == "gateway-and-process"
