"""The README and the docs/ pages link only to what exists: every relative link and image resolves to
a file of the repository and every anchor to a heading (as GitHub renders them), the pages never
point outside the repository, and the site builds with ``mkdocs build --strict`` (which fails on a
broken link or anchor inside docs/, see mkdocs.yml's ``validation``)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def _prose(text: str) -> str:
    """The text without code blocks and inline code, where a bracket is not a link."""
    return _CODE.sub("", _FENCE.sub("", text))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces
    to hyphens (runs of hyphens kept)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = github_slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(page: Path) -> list[str]:
    """The relative link targets of a page (web addresses left out)."""
    targets = _LINK.findall(_prose(page.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def broken(page: Path, root: Path = ROOT) -> list[str]:
    """The page's relative links whose file or anchor does not exist, each with the reason."""
    bad = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no file {dest}")
        elif root not in dest.parents:
            bad.append(f"{target}: outside the repository")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(root)}")
    return bad


def test_the_link_check_sees_links_and_anchors(tmp_path):
    """The checker itself: a good link and anchor pass; a missing file, a missing anchor and a link
    out of the repository fail; a link inside code is not a link."""
    assert github_slug("Comparing runs: `simeval compare`") == "comparing-runs-simeval-compare"
    assert github_slug("Set-up (Python 3.11, CPU only)") == "set-up-python-311-cpu-only"
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "setup.md").write_text("# Set-up\n\n## Pins\n\n## Pins\n")
    (tmp_path / "outside.md").write_text("# Outside\n")
    page = repo / "docs" / "probe.md"
    page.write_text("# Top\n\n[a](#top) [b](#nope) [c](nothere.md) [d](setup.md#nope) [e](../../outside.md)\n"
                    "[h](setup.md#pins-1) ![i](setup.md) [j](https://example.org/x#y) `[f](nothere2.md)`\n\n"
                    "```\n[g](nothere3.md)\n```\n")
    assert len(links(page)) == 7 and not any(t.startswith("https") for t in links(page))
    bad = broken(page, root=repo)
    assert [b.split(":")[0] for b in bad] == ["#nope", "nothere.md", "setup.md#nope", "../../outside.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    assert broken(page) == []


def test_the_readme_links_every_docs_page():
    """A page nobody links from the README is a page a newcomer never finds."""
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    pages = {p.resolve() for p in (ROOT / "docs").glob("*.md") if p.name != "index.md"}
    assert sorted(p.name for p in pages - linked) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_stand_on_their_own(page):
    """The repository stands on its own: no page points at a path outside it."""
    text = page.read_text(encoding="utf-8")
    assert not re.findall(r"/work/|\.\./shared|/tmp/bash_jobs", text)


def test_the_readme_keeps_the_set_up_and_test_commands():
    """`.ci/run` and its users rely on these two commands standing in the README as they are."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert ("python3.11 -m venv .venv && . .venv/bin/activate && pip install -e . && "
            "simeval run --policy scripted --suite perturb --out runs/perturb-scripted") in readme
    assert ('python3.11 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[test,ray]" && '
            "python -m pytest -q") in readme


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason='mkdocs is not installed (pip install -e ".[test]")')
def test_the_site_builds_strictly(tmp_path):
    """Broken links and anchors inside docs/ are warnings in mkdocs.yml, and --strict fails on them."""
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "results" / "tasks.png").is_file()  # the figures travel with the site
    assert (tmp_path / "site" / "libero.html").is_file()
