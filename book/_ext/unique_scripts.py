"""Sphinx extension: drop repeated ``<script>`` entries from every page.

With Jupyter Book 1.0.4 and Sphinx 7.4 the inline configuration scripts of
sphinx-thebe and sphinx-togglebutton are added twice to each page (once with the
file name ``None`` and once with ``""``); the second ``const THEBE_JS_URL = ...``
then throws "Identifier 'THEBE_JS_URL' has already been declared" in every
reader's browser console (found by tests/browser). This keeps the first of each
identical script and drops the rest.
"""

from __future__ import annotations


def _key(script: object) -> tuple:
    filename = getattr(script, "filename", script) or ""  # None and "" alike
    attributes = getattr(script, "attributes", {}) or {}
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def unique_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
