"""Run chosen code cells of a chapter notebook as a plain script.

For machines without Jupyter (a rented GPU, say) and for re-running part of a
chapter under another profile, e.g. the Prototypical-network trainings and
results table of the metric chapter under ``paper``::

    METALEARN_PROFILE=paper python benchmarks/notebook_cells.py \
        chapters/metric_learning.ipynb 2 4 6 8 9 11 12 16 18

Usage: ``notebook_cells.py NOTEBOOK [CELL ...] [--before CODE] [--after CODE]``
with cell indices counted from 0 over all cells (markdown included); no index
runs every code cell. ``--before`` runs a line of Python before the cells (to
define what a skipped cell would have, e.g. ``results = {}``), ``--after`` one
after them (e.g. to print a test result). Cells that
install on Colab or use learn2learn are skipped. Figures go to the Agg backend
and are discarded; a cell's final expression is printed, as Jupyter would show
it. If IPython is missing, a minimal stand-in provides ``IPython.display``.
"""

import argparse
import ast
import json
import sys
import time
import types

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

try:
    import IPython.display  # noqa: F401
except ImportError:  # the stand-in: enough for `display` and for matplotlib
    ipython = types.ModuleType("IPython")
    display = types.ModuleType("IPython.display")
    display.display = lambda *objects, **_: print(*objects)
    display.Markdown = lambda text: text
    ipython.get_ipython = lambda: None
    ipython.version_info = (8, 24)
    ipython.display = display
    sys.modules["IPython"], sys.modules["IPython.display"] = ipython, display


def shown(value: object) -> str:
    """What a notebook would display for ``value``: Markdown if it has it."""
    markdown = getattr(value, "_repr_markdown_", None)
    return markdown() if markdown is not None else repr(value)


def main(path: str, wanted: list[int], before: str = "", after: str = "") -> None:
    with open(path, encoding="utf-8") as file:
        cells = json.load(file)["cells"]
    namespace = {"__name__": "__main__"}
    plt.show = lambda *args, **kwargs: plt.close("all")
    exec(before, namespace)  # noqa: S102
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code" or (wanted and index not in wanted):
            continue
        source = "".join(cell["source"])
        if any(word in source for word in ("google.colab", "learn2learn", "l2l")):
            print(f"[cell {index}] skipped (Colab / learn2learn)", flush=True)
            continue
        tree = ast.parse(source)
        ends_in_expression = tree.body and isinstance(tree.body[-1], ast.Expr)
        last = tree.body.pop() if ends_in_expression else None
        started = time.perf_counter()
        exec(compile(tree, f"{path}[{index}]", "exec"), namespace)  # noqa: S102
        if last is not None:
            code = compile(ast.Expression(last.value), f"{path}[{index}]", "eval")
            value = eval(code, namespace)  # noqa: S307
            if value is not None:
                print(shown(value))
        print(f"[cell {index}] ok in {time.perf_counter() - started:.1f} s", flush=True)
    exec(after, namespace)  # noqa: S102
    print(f"NOTEBOOK OK {path}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(usage=__doc__)
    parser.add_argument("notebook")
    parser.add_argument("cells", nargs="*", type=int)
    parser.add_argument("--before", default="", help="Python run before the cells")
    parser.add_argument("--after", default="", help="Python run after the cells")
    args = parser.parse_args()
    main(args.notebook, args.cells, args.before, args.after)
