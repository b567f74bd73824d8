"""The Colab set-up, tested: the wheel, Python 3.12, learn2learn, a chapter elsewhere.

Colab runs Python 3.12 with its own torch, and a reader's first cell (the
notebooks' bootstrap cell) installs the course library and learn2learn. This
test does what that cell does on a machine like CI's:

1. builds the project's wheel (``pip wheel``, with build isolation, as
   ``pip install git+...`` does on Colab);
2. creates a fresh virtual environment on Python 3.12 and installs what Colab
   brings with it: torch and torchvision at the lock's versions (the CUDA build
   from PyPI, the only one there; it runs on the CPU), requests (which
   learn2learn imports) and a Jupyter kernel;
3. executes the bootstrap cell of the chapters *verbatim* in that environment,
   as if on Colab (a ``google.colab`` module is present), with one change: the
   ``git+<repository>[@<ref>]`` it installs is replaced by the wheel of step 1,
   since CI cannot reach the repository (a ref, if the cell names one, must be
   ``v<metalearn.__version__>``, the version of that wheel);
4. executes one chapter (``METALEARN_COLAB_CHAPTERS``, default ``maml.ipynb``,
   which compares with learn2learn; ``all`` runs every chapter) in the
   ``smoke`` profile from a folder outside the repository, with no
   ``PYTHONPATH``, so a chapter that reads a file of the repository (a results
   file, a relative path) or imports the library from ``src/`` fails here.

What it does not cover: Colab's own package versions (it installs the lock's),
a GPU (the chapter runs on the CPU), fetching the repository at the ref the
cell names (the wheel is built from this checkout), and the other chapters
unless ``METALEARN_COLAB_CHAPTERS=all``. It took 5.5 minutes on our 2-core
machine (with learn2learn's built wheel in pip's cache; about 1.5 minutes more
without), most of it installing torch (a 0.55 GB download from PyPI; the CUDA
libraries, another 3 GB, came from the machine's local wheel store).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO, omniglot_root

PYTHON = Path(os.environ.get(
    "METALEARN_COLAB_PYTHON", Path.home() / ".pyenv/versions/3.12.1/bin/python"))
CHAPTERS = os.environ.get("METALEARN_COLAB_CHAPTERS", "maml.ipynb")
COLAB_PACKAGES = ("torch", "torchvision", "requests", "ipykernel", "nbclient",
                  "nbformat")  # what Colab has installed before the first cell
TIMEOUT = 1800  # seconds for any one install or execution


def lock_versions(names: tuple[str, ...]) -> list[str]:
    """``name==version`` of each package, from requirements-lock.txt."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (
        REPO / "requirements-lock.txt").read_text(), flags=re.M))
    missing = [n for n in names if n not in pins]
    assert not missing, f"requirements-lock.txt pins none of {missing}"
    return [f"{n}=={pins[n]}" for n in names]


def bootstrap_source() -> str:
    """The first code cell of the first chapter (all chapters share it)."""
    notebook = json.loads((REPO / "chapters/few_shot_learning.ipynb").read_text())
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    return "".join(cell["source"])


def run(command: list[str], log: list[str], **options) -> str:
    """Run ``command`` (no shell), record its duration, fail with its output."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                          **options)
    shown = " ".join("<script>" if "\n" in word else word for word in command)
    log.append(f"{time.perf_counter() - started:6.1f} s  {shown[:150]}")
    assert done.returncode == 0, (
        f"{command} failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
        f"{done.stderr[-4000:]}")
    return done.stdout


# The bootstrap cell, run as on Colab, installing the wheel instead of git+URL.
AS_ON_COLAB = textwrap.dedent('''
    import subprocess, sys, types
    sys.modules["google.colab"] = types.ModuleType("google.colab")
    wheel, prefix, source = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
    real_run = subprocess.run

    def run(command, *args, **kwargs):
        for i, word in enumerate(command):
            if isinstance(word, str) and word.startswith("git+" + prefix):
                print("REF", word[len("git+" + prefix):])
                command = [*command[:i], wheel, *command[i + 1:]]
        return real_run(command, *args, **kwargs)

    subprocess.run = run
    exec(compile(source, "bootstrap cell", "exec"))
''')

EXECUTE = textwrap.dedent('''
    import sys, nbclient, nbformat
    path = sys.argv[1]
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=-1, kernel_name="python3").execute()
    print("executed", path)
''')


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A Python 3.12 environment set up by the bootstrap cell, and its log."""
    if not PYTHON.is_file():
        message = (f"Python 3.12 not found at {PYTHON}; set METALEARN_COLAB_PYTHON "
                   "to a Python 3.12 interpreter.")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("colab")
    log: list[str] = []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
         str(root / "dist"), str(REPO)], log, env=env)
    wheel = next((root / "dist").glob("metalearn-*.whl"))
    venv = root / "venv"
    run([str(PYTHON), "-m", "venv", str(venv)], log, env=env)
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", *lock_versions(COLAB_PACKAGES)],
        log, env=env)
    cell = root / "bootstrap.py"
    cell.write_text(bootstrap_source())
    url = re.search(r'REPOSITORY = "([^"]+)"', bootstrap_source()).group(1)
    out = run([python, "-c", AS_ON_COLAB, str(wheel), url, str(cell)], log,
              env=env, cwd=root)
    outside = root / "reader"  # no repository around it
    outside.mkdir()
    try:
        yield {"python": python, "wheel": wheel, "env": env, "outside": outside,
               "refs": re.findall(r"^REF (.*)$", out, flags=re.M), "log": log}
    finally:
        print("\n".join(["colab install test:", *log]))
        shutil.rmtree(venv, ignore_errors=True)  # 5 GB, mostly CUDA libraries


@pytest.mark.slow
def test_bootstrap_cell_installs_the_library_and_learn2learn_on_python_312(colab):
    from metalearn import __version__

    assert colab["refs"], "the bootstrap cell installed no git+<repository>"
    for ref in colab["refs"]:
        assert ref in ("", f"@v{__version__}"), (
            f"the bootstrap cell installs git+<repository>{ref}, but this library "
            f"is version {__version__}: the cell must name @v{__version__}")
    probe = ("import sys, learn2learn, metalearn, torch; "
             "print(sys.version_info[:2], metalearn.__version__, metalearn.__file__,"
             " learn2learn.__version__, torch.__version__)")
    out = run([colab["python"], "-c", probe], colab["log"], env=colab["env"],
              cwd=colab["outside"])
    assert out.startswith("(3, 12)"), out
    assert f" {__version__} " in out and "site-packages" in out, out
    assert " 0.2.0 " in out, out


@pytest.mark.slow
def test_a_chapter_runs_in_smoke_outside_the_repository(colab):
    names = sorted(p.name for p in (REPO / "chapters").glob("*.ipynb"))
    chosen = names if CHAPTERS == "all" else CHAPTERS.split(",")
    env = {**colab["env"], "METALEARN_PROFILE": "smoke", "MPLBACKEND": "Agg",
           "METALEARN_DATA": str(omniglot_root()), "OMP_NUM_THREADS": "1",
           "METALEARN_CACHE": str(colab["outside"] / "cache"),
           "METALEARN_PROGRESS": "0"}
    env.pop("METALEARN_MAX_STEPS", None)
    for name in chosen:
        copy = colab["outside"] / name
        shutil.copy(REPO / "chapters" / name, copy)
        out = run([colab["python"], "-c", EXECUTE, str(copy)], colab["log"],
                  env=env, cwd=colab["outside"])
        assert f"executed {copy}" in out
