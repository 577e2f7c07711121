"""The token inspector as one self-contained HTML page (``tqstar trace view``): the answers as JSON in a
``<script type="application/json">`` block, the inspector's script and style inline, nothing fetched.

Text reaches the page only as JSON data that the script puts in with ``textContent``; the JSON escapes
``<``, ``>`` and ``&``, so no answer can close its block, and the Content-Security-Policy allows exactly the
page's own script and style by hash, so even markup that slipped in could not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from dataclasses import asdict
from importlib import resources
from pathlib import Path

from ..jsonl import finite
from .protocol import Answer

STATIC = resources.files(__package__) / "static"


def static_text(name: str) -> str:
    """A file shipped in ``tqstar/audit/static`` (the inspector's script and style)."""
    return (STATIC / name).read_text(encoding="utf-8")


def page_html(answers: list[Answer], title: str, home: str | None = None) -> str:
    """The page showing ``answers``, grouped by prompt, side by side within a prompt; ``home``: the address
    of a page to link back to (an eval report)."""
    data = {"title": title, "groups": _groups(answers)}
    script = static_text("inspector.js") + "\n" + static_text("view.js")
    style = static_text("inspector.css")
    policy = (f"default-src 'none'; script-src '{_hash(script)}'; style-src '{_hash(style)}'; "
              "img-src data:; base-uri 'none'; form-action 'none'")
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{policy}\">"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{style}</style></head>\n"
            f"<body>{_home_link(home)}<main></main>\n"
            f"<script type='application/json' id='tqstar-answers'>{json_for_script(data)}</script>\n"
            f"<script>{script}</script>\n</body></html>\n")


def write_page(answers: list[Answer], path: str | Path, title: str, home: str | None = None) -> Path:
    path = Path(path)
    path.write_text(page_html(answers, title, home), encoding="utf-8")
    return path


def _home_link(home: str | None) -> str:
    return f"<nav><a href=\"{html.escape(home)}\">← back</a></nav>" if home else ""


def json_for_script(value) -> str:
    """JSON safe inside a ``<script>`` element: no ``</script>``, ``<!--`` or line separators can appear."""
    text = json.dumps(finite(value), ensure_ascii=False, allow_nan=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _groups(answers: list[Answer]) -> list[dict]:
    """Answers to the same prompt together (by its text, else by where they were read)."""
    groups: dict[str, dict] = {}
    for answer in answers:
        key = answer.prompt if answer.prompt is not None else answer.source.rpartition(", ")[2] or "answers"
        label = "Prompt" if answer.prompt is not None else key.capitalize()
        group = groups.setdefault(key, {"label": label, "prompt": answer.prompt, "answers": []})
        group["answers"].append(asdict(answer))
    return list(groups.values())


def _hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()
