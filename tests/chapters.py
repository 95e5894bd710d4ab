"""What the tests know about the book's chapters, read from the book's own files."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent

# Names each chapter's `library` cells must define (CONTRIBUTING.md, notebook conventions).
PUBLIC_NAMES = {
    "01_why_normalize": ["DeepMLP", "activation_statistics", "gradient_norms", "load_digits_data"],
    "02_batch_norm": ["BatchNorm", "batch_norm_backward"],
    "03_batch_norm_limits": ["StepwiseBatchNorm", "SyncedBatchNorm", "run_data_parallel"],
    "04_layer_norm": ["layer_norm_reference", "layer_norm_backward", "invariance_table"],
    "05_layer_norm_pytorch": ["LayerNorm", "layer_norm"],
    "06_fast_layer_norm": ["triton_layer_norm"],
    "07_layer_norm_in_practice": ["LNLSTMCell", "LNLSTM", "RMSNorm", "TransformerLM"],
}


def book_config() -> dict:
    return yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))


def toc_files() -> list[str]:
    """Every file listed in _toc.yml (without suffix), root first, in reading order."""
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def chapter_notebooks() -> list[Path]:
    """The chapter notebooks listed in _toc.yml, in reading order."""
    return [REPO_ROOT / f"{entry}.ipynb" for entry in toc_files() if entry.startswith("notebooks/")]
