"""Checks on the committed notebooks: what the book shows must be a real run.

Every chapter notebook must have been executed top to bottom (execution counts
1..n), hold no error output, record its run profile (not ``smoke``), store
the image of every figure it shows, start with the same Colab bootstrap cell,
and that cell must point at the repository URL of ``_config.yml``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "chapters").glob("*.ipynb"))


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def code_cells(notebook: dict) -> list[dict]:
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def text_of(output: dict) -> str:
    text = output.get("text", "")
    if "data" in output:
        text = output["data"].get("text/plain", "")
    return "".join(text) if isinstance(text, list) else text


def test_there_are_chapters():
    assert NOTEBOOKS, "no notebooks in chapters/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_in_order_without_errors(path):
    cells = code_cells(load(path))
    counts = [c["execution_count"] for c in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name}: cells were not executed once, top to bottom "
        f"(execution counts {counts}); run `make notebooks`."
    )
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"{path.name} holds an error output: {errors[0]['ename']}"
    assert any(c["outputs"] for c in cells), f"{path.name} has no stored outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_records_profile_device_and_wall_time(path):
    text = "\n".join(text_of(o) for c in code_cells(load(path)) for o in c["outputs"])
    profile = re.search(r"profile : (\w+)", text)
    assert profile, f"{path.name}: no run header (metalearn.runtime.start_run)"
    assert profile.group(1) in {"short", "gpu", "paper"}, (
        f"{path.name}: stored outputs come from the {profile.group(1)} profile; "
        "refresh them with `make notebooks` (PROFILE=short, gpu or paper)."
    )
    assert "device  :" in text and "seed    :" in text
    assert re.search(r"wall time: [\d.]+ s", text), f"{path.name}: no wall time"


def test_colab_bootstrap_is_identical_and_points_at_the_repository():
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    url = config["repository"]["url"]
    first_cells = {p.name: "".join(code_cells(load(p))[0]["source"]) for p in NOTEBOOKS}
    sources = set(first_cells.values())
    assert len(sources) == 1, f"bootstrap cells differ: {sorted(first_cells)}"
    source = sources.pop()
    assert "google.colab" in source
    assert f'REPOSITORY = "{url}"' in source
    assert "learn2learn==0.2.0" in source and "--no-deps" in source


def test_colab_bootstrap_installs_this_library_version():
    """The set-up cell installs the release the notebook was executed with.

    Colab would otherwise install whatever the default branch holds later. Tag
    the release ``v<version>`` when the notebooks are refreshed at it.
    """
    import metalearn

    source = "".join(code_cells(load(NOTEBOOKS[0]))[0]["source"])
    match = re.search(r'VERSION = "([^"]+)"', source)
    assert match and match.group(1) == metalearn.__version__, (
        "the set-up cell must install this library version: set VERSION = "
        f'"{metalearn.__version__}" (and tag v{metalearn.__version__})'
    )
    assert 'f"git+{REPOSITORY}@v{VERSION}"' in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_shown_figure_is_stored(path):
    """A cell that calls ``plt.show()`` must store its image.

    Executing a notebook with a non-inline matplotlib backend (for example
    ``MPLBACKEND=Agg`` in the environment) runs every cell without error but
    stores no figure, and the book then renders without its plots.
    """
    missing = [
        index
        for index, cell in enumerate(load(path)["cells"])
        if cell["cell_type"] == "code"
        and "plt.show()" in "".join(cell["source"])
        and not any("image/png" in o.get("data", {}) for o in cell["outputs"])
    ]
    assert not missing, (
        f"{path.name}: cells {missing} call plt.show() but store no image; "
        "execute the notebook without MPLBACKEND set (`make notebooks`)."
    )


def rendered_lines(cell: dict) -> list[str]:
    """The non-blank lines a cell's stored text renders to (``\r`` breaks too)."""
    text = "".join(text_of(o) for o in cell["outputs"]
                   if not ("data" in o and "image/png" in o["data"]))
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


MAX_OUTPUT_LINES = 40
PROGRESS_BAR = re.compile(r"\d(it/s|s/it)\b|\d+%\|")  # tqdm's rate or its bar
MAX_VISIBLE_CODE_LINES = 25
MAX_CODE_WIDTH = 88


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_are_summaries_not_progress_bars(path):
    """No cell stores more than 40 rendered lines, and none stores a progress bar."""
    for index, cell in enumerate(code_cells(load(path))):
        lines = rendered_lines(cell)
        assert len(lines) <= MAX_OUTPUT_LINES, (
            f"{path.name}: code cell {index + 1} stores {len(lines)} rendered lines "
            f"(at most {MAX_OUTPUT_LINES}); print a summary instead."
        )
        bars = [line for line in lines if PROGRESS_BAR.search(line)]
        assert not bars, f"{path.name}: code cell {index + 1} stores a progress bar"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_visible_code_fits_one_screen_and_the_page(path):
    """Code a reader sees: <= 25 lines, <= 88 characters (else tag it hide-input)."""
    for index, cell in enumerate(code_cells(load(path))):
        tags = cell.get("metadata", {}).get("tags", [])
        if "hide-input" in tags or "remove-input" in tags or "remove-cell" in tags:
            continue
        lines = "".join(cell["source"]).splitlines()
        assert len(lines) <= MAX_VISIBLE_CODE_LINES, (
            f"{path.name}: code cell {index + 1} shows {len(lines)} lines of code "
            f"(at most {MAX_VISIBLE_CODE_LINES}): move plumbing into the library or "
            "tag the cell hide-input."
        )
        wide = [line for line in lines if len(line) > MAX_CODE_WIDTH]
        assert not wide, f"{path.name}: code cell {index + 1} has a line wider than 88"
