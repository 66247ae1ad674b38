"""MkDocs hook: `<!-- presets: train_fql.py -->` becomes that script's PRESETS table, `<!-- published -->` the
published numbers of `offrl.tools.published`; both are read from the code, so the pages never hold a retyped copy.
"""

from __future__ import annotations

import pathlib
import re

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
_MARKER = re.compile(r"<!-- presets: (train_\w+\.py) -->")


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def presets_table(script: str) -> str:
    """The script's PRESETS as a Markdown table: env-name pattern, settings, source (later rows win)."""
    from offrl.args import import_script

    presets = import_script(REPO_ROOT / script).PRESETS
    lines = ["| env names matching (from the start) | settings | source |", "|---|---|---|"]
    for preset in presets:
        pattern = preset.pattern.replace("|", "\\|")
        settings = ", ".join(f"`--{k.replace('_', '-')} {_value(v)}`" for k, v in preset.values.items())
        lines.append(f"| `{pattern}` | {settings} | {preset.source} |")
    return "\n".join(lines)


def published_table() -> str:
    """`offrl.tools.published`'s numbers (domain means, then single tasks) and their sources."""
    from offrl.tools import published

    lines = [
        "| domain or env | algorithm | success (%), the report's column to read it against (source) |",
        "|---|---|---|",
    ]
    for (domain, algo), entry in sorted(published.DOMAIN.items()):
        lines.append(f"| {domain} ({entry.tasks}-task mean) | {algo} | {entry.cell()} |")
    for (env_name, algo), entries in sorted(published.TASK.items()):
        lines.append(f"| `{env_name}` | {algo} | {'; '.join(entry.cell() for entry in entries)} |")
    lines += ["", "Sources:", ""] + [f"- {name}: {text}" for name, text in published.SOURCES.items()]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = _MARKER.sub(lambda match: presets_table(match.group(1)), markdown)
    return markdown.replace("<!-- published -->", published_table())
