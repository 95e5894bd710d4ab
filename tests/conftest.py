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
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from booktools.book import REPO_ROOT, build  # noqa: E402


@dataclass
class BuiltBook:
    returncode: int
    log: str
    html: Path


@pytest.fixture(scope="session")
def built_book() -> BuiltBook:
    """Build the book exactly as `make book` does, once per test session.

    This is the only place where `make test` executes the chapters: the build runs each
    one alone in an empty temporary folder (execute.run_in_temp) and stores the executed
    notebook in _build/.jupyter_cache, where the tests read it. After a `make book` with
    unchanged notebooks it executes nothing.
    """
    result = build(REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (REPO_ROOT / "_build").mkdir(exist_ok=True)
    (REPO_ROOT / "_build" / "build.log").write_text(result.stdout, encoding="utf-8")
    return BuiltBook(result.returncode, result.stdout, REPO_ROOT / "_build" / "html")
