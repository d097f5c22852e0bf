"""notebooks/inspect_concepts.ipynb runs top to bottom against a finished smoke run."""

import json
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "inspect_concepts.ipynb"
KERNEL = "soxai-test-python"


@pytest.fixture
def kernel_of_this_python(tmp_path, monkeypatch):
    """A kernelspec for the interpreter running the tests, found through JUPYTER_PATH only.

    Nothing is registered globally, and the notebook cannot pick up another Python's "python3".
    """
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "soxai tests", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return KERNEL


def _execute(kernel: str, cwd: Path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name=kernel, timeout=300, resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


@pytest.mark.slow
def test_inspect_concepts__runs_top_to_bottom_on_a_smoke_run(smoke_run_dir, kernel_of_this_python, monkeypatch,
                                                             tmp_path):
    monkeypatch.setenv("SOXAI_RUN_DIR", str(smoke_run_dir))
    nb = _execute(kernel_of_this_python, tmp_path)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "soxai flagged" in text and "PrunedManifestDataset" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # embedding, detector scores, galleries, comparison


def test_inspect_concepts__only_calls_soxai():
    """Notebooks show a run; logic belongs in soxai/ (no function or class definitions here)."""
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "def " not in source and "class " not in source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"


@pytest.mark.slow
def test_inspect_concepts__without_run_dir_fails_clearly(kernel_of_this_python, monkeypatch, tmp_path):
    from nbclient.exceptions import CellExecutionError

    monkeypatch.delenv("SOXAI_RUN_DIR", raising=False)
    with pytest.raises(CellExecutionError, match="StageError.*set-SOXAI_RUN_DIR-to-a-run-directory"):
        _execute(kernel_of_this_python, tmp_path)
