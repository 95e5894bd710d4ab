import os

# Triton reads this when it is imported: run kernels on the CPU interpreter
# unless a real GPU is present.
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:  # pragma: no cover - torch is in requirements.txt
    pass


import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BuiltBook:
    returncode: int
    log: str
    html: Path


@pytest.fixture(scope="session")
def built_book() -> BuiltBook:
    """Build the book exactly as `make book` does, once per test session.

    The execution cache in _build/.jupyter_cache makes this quick after a
    `make book`; on a clean checkout it executes every chapter.
    """
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", ".", "-W", "-n", "--keep-going"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    log = result.stdout + result.stderr
    (REPO_ROOT / "_build").mkdir(exist_ok=True)
    (REPO_ROOT / "_build" / "build.log").write_text(log, encoding="utf-8")
    return BuiltBook(result.returncode, log, REPO_ROOT / "_build" / "html")
