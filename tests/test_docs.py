"""The ``>>>`` examples of the README and of every page in ``docs/`` print what the text says they print.

The ```` ```python ```` blocks that start with ``>>>`` run in order in one namespace per file, as a reader
would type them, statement by statement. The lines under a statement are its expected output (arrays as NumPy
prints them, a tuple of arrays joined by ", ", an exception as ``Type: message``), compared with runs of
whitespace collapsed. A statement with no lines under it is run and not compared.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).parent.parent


def examples(text: str) -> list[list[tuple[str, str]]]:
    """Per ``>>>`` block: (statement, expected output) pairs, ``...`` continuation lines joined."""
    blocks = []
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        lines = block.splitlines()
        if not lines or not lines[0].startswith(">>>"):
            continue
        pairs, i = [], 0
        while i < len(lines):
            source = [lines[i][4:]]
            i += 1
            while i < len(lines) and lines[i].startswith("..."):
                source.append(lines[i][4:])
                i += 1
            output = []
            while i < len(lines) and not lines[i].startswith(">>>"):
                output.append(lines[i])
                i += 1
            pairs.append(("\n".join(source), "\n".join(output)))
        blocks.append(pairs)
    return blocks


def shown(value: Any) -> str:
    """How the docs write a value: arrays as NumPy prints them, a tuple of arrays joined by ', '."""
    if isinstance(value, tuple) and any(hasattr(v, "shape") for v in value):
        return ", ".join(shown(v) for v in value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return str(np.asarray(value))
    return repr(value)


def collapsed(text: str) -> str:
    return " ".join(text.split())


DOCS = sorted(str(p.relative_to(ROOT)) for p in [ROOT / "README.md", *ROOT.glob("docs/*.md")] if ">>>" in p.read_text())


def test_the_readme_and_the_guide_have_examples():
    assert {"README.md", "docs/guide.md"} <= set(DOCS)


@pytest.mark.parametrize("doc", DOCS)
def test_the_examples_print_what_the_text_shows(doc):
    blocks = examples((ROOT / doc).read_text())
    assert blocks, f"{doc} has no >>> examples"
    namespace: dict[str, Any] = {}
    for pairs in blocks:
        for source, expected in pairs:
            if re.match(r"(ValueError|TypeError): ", expected):
                kind, message = expected.split(": ", 1)
                with pytest.raises({"ValueError": ValueError, "TypeError": TypeError}[kind]) as raised:
                    eval(source, namespace)  # noqa: S307
                assert collapsed(str(raised.value)) == collapsed(message), source
                continue
            try:
                compiled = compile(source, doc, "eval")
            except SyntaxError:
                exec(compile(source, doc, "exec"), namespace)  # noqa: S102
                assert not expected.strip(), f"{source!r} prints nothing, the text shows {expected!r}"
                continue
            value = eval(compiled, namespace)  # noqa: S307
            if expected.strip():
                assert collapsed(shown(value)) == collapsed(expected), source
