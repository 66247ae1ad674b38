"""The documentation: the MkDocs site builds with --strict (no broken link, every page in the navigation), every
algorithm page has its sections, the README stays short, and no file cites a document outside the repository."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
ALGORITHMS = ("iql", "sacbc", "fql", "fan", "idql")
SECTIONS = ("## Overview", "## Losses", "## Usage per domain", "## Logged metrics", "## Implementation details",
            "## Results", "## Modifying this script")  # fmt: skip


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    process = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    fql = (tmp_path / "site" / "algorithms" / "fql" / "index.html").read_text()
    assert "puzzle-(3x3" in fql and "alpha 1000" in fql  # the presets table, read from the script
    assert "<!-- presets" not in fql


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_algorithm_page_has_every_section(algo):
    text = (REPO_ROOT / "docs" / "algorithms" / f"{algo}.md").read_text()
    positions = [text.find(section) for section in SECTIONS]
    assert -1 not in positions, [s for s, p in zip(SECTIONS, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    assert f"<!-- presets: train_{algo}.py -->" in text


def test_readme_is_short():
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= 170


def test_no_file_cites_documents_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    # spelled in pieces, so that this file does not match itself
    needles = tuple(a + b for a, b in (("REFERENCE", ".md"), ("SCRIPTS", ".md"), ("STYLE", ".md"), ("seed ", "000"),
                                       ("seed ", "post")))  # fmt: skip
    hits = []
    for name in tracked:
        path = REPO_ROOT / name
        if path.suffix in (".py", ".md", ".toml", ".yml", ".cff", ".txt") and path.is_file():
            text = path.read_text(errors="replace")
            hits += [f"{name}: {needle}" for needle in needles if needle in text]
    assert hits == []


def test_the_first_commands_figures_are_stated_once():
    """The README's first command: its time and scores are measured once, in docs/runs.md's quick start, and the README
    links there; no page restates a CPU updates/s range of its own (docs/speed.md holds the rates)."""
    readme = (REPO_ROOT / "README.md").read_text()
    runs = (REPO_ROOT / "docs" / "runs.md").read_text()
    first = readme.split("## The first command", 1)[1].split("## What a run writes", 1)[0]
    assert "(docs/runs.md#quick-start-on-a-cpu-no-gpu-no-network)" in first
    figure = re.compile(r"\d+ min \d+ s|success(?: rate)? of 0\.\d+|\d+(?:\.\d+)?-\d+(?:\.\d+)? updates/s")
    assert not figure.findall(first)
    quick = runs.split("## Quick start on a CPU (no GPU, no network)", 1)[1].split("\n## ", 1)[0]
    assert len(re.findall(r"\d+ min \d+ s end to end", quick)) == 1 and "final 0.35" in quick
    outside_report = readme.split("<!-- offrl.report: begin -->")[0] + readme.split("<!-- offrl.report: end -->")[1]
    for name, text in [("README.md", outside_report), ("docs/runs.md", runs)]:
        assert not re.findall(r"\d+(?:\.\d+)?-\d+(?:\.\d+)? updates/s", text), name
