"""MkDocs hooks: the pages are written for GitHub's Markdown and built into a site unchanged.

- **Figures.** The figures under results/ stay where the scripts that make them write them
  (``scripts/train_reference.sh``, ``scripts/adaptation_study.py --report``) and where the README
  links them. A docs page links them as ``../results/NAME.png``, the path that works on GitHub; the
  build adds every ``results/*.png`` to the site at ``results/NAME.png`` and points the page's links
  there (every page sits at the top of docs/), so MkDocs' own link validation checks each figure.
- **Lists.** GitHub starts a list right after a paragraph line and nests it by two spaces;
  Python-Markdown wants a blank line before a list and four spaces per level. The build inserts
  the blank line and doubles the indentation of list lines, outside code blocks only.
"""
from __future__ import annotations

import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

_FIGURE_LINK = re.compile(r"\]\(\.\./results/")
_ITEM = re.compile(r"^(\s*)([-*+]|\d+\.)\s")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _root(config: MkDocsConfig) -> Path:
    """The repository root: where mkdocs.yml lies."""
    return Path(config.config_file_path).resolve().parent


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the committed figures under results/ to the site."""
    root = _root(config)
    for png in sorted((root / "results").glob("*.png")):
        files.append(File(f"results/{png.name}", src_dir=str(root), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files


def github_lists(markdown: str) -> str:
    """GitHub-style lists as Python-Markdown reads them: a blank line before a list that follows a
    paragraph and between the items of a list that holds one, and every indented line of a list at
    twice its indentation."""
    out: list[str] = []
    fenced = in_list = loose = False
    for line in markdown.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        if fenced or _FENCE.match(line):
            out.append(line)
            continue
        item = _ITEM.match(line)
        top = bool(item) and not item.group(1)
        if top and out and out[-1].strip() and (loose or not in_list):
            out.append("")  # a list right after a paragraph line, or the next item of a loose list
        if top:
            loose = loose and in_list
            in_list = True
        elif line.strip() and not line[0].isspace() and not item:
            in_list = loose = False  # a paragraph at the margin ends the list
        elif in_list and not line.strip():
            loose = True  # a blank line inside an item: Python-Markdown needs one before the next
        if in_list and line[:1] == " ":
            indent = len(line) - len(line.lstrip(" "))
            line = " " * (2 * indent) + line[indent:]
        out.append(line)
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Point a page's ``../results/`` links at the site's copy, and read its lists as GitHub does."""
    if "/" in page.file.src_uri:
        raise ValueError(f"{page.file.src_uri}: pages sit at the top of docs/ for the results/ links")
    return github_lists(_FIGURE_LINK.sub("](results/", markdown))
