"""The walkthrough notebooks (notebooks/*.ipynb) run top to bottom, offline, in a kernel of this interpreter.

Each notebook runs with nbclient in a fresh kernel whose working directory is notebooks/. The kernel comes from a
kernel spec written here (``python3``, found first through ``$JUPYTER_PATH``) that runs ``sys.executable``, so a
``python3`` kernel installed elsewhere on the machine cannot run the notebooks against another interpreter; a
first cell added in memory checks it. Notebooks are committed without outputs.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
MODEL = [pytest.mark.slow, pytest.mark.model]  # the shipped MiniLM
LLM = [*MODEL, pytest.mark.llm]  # and the shipped SmolLM2-135M
CASES = [
    pytest.param("01_index_and_search.ipynb", marks=MODEL),
    pytest.param("02_domain_qa_bot.ipynb", marks=LLM),
    pytest.param("03_langchain.ipynb", marks=LLM),
    pytest.param("04_training_small_models.ipynb", marks=MODEL),
    pytest.param("05_tables_and_tools.ipynb", marks=LLM),
]
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the colours of IPython's tracebacks
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_every_notebook_is_tested_and_committed_without_outputs() -> None:
    import nbformat

    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == [c.values[0] for c in CASES]
    for name in names:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        assert nb.nbformat == 4 and nb.cells[0].cell_type == "markdown", name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{name} has outputs; clear them"


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Jupyter data folder whose ``python3`` kernel spec runs this interpreter, offline."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (pilotfish tests)",
        "language": "python",
        "env": OFFLINE,
    }
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    return root


@pytest.mark.parametrize("name", CASES)
def test_notebook_runs_top_to_bottom(name: str, jupyter_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))  # searched before every other kernel folder
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    check = f"import sys\nassert sys.executable == {sys.executable!r}, f'the kernel runs {{sys.executable}}'"
    nb.cells.insert(0, nbformat.v4.new_code_cell(check))
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute()
    except CellExecutionError as e:  # its message holds the failing cell's source and traceback
        plain = ANSI.sub("", str(e))
        pytest.fail(f"{name}: a cell raised\n{plain}", pytrace=False)
