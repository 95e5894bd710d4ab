"""What the book's machinery knows about the book, read from the book's own files.

One place for: the repository root, `_config.yml`, the toc and its chapters, each
chapter's public names, the published site's URL, Colab URLs and the build command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"

# The build, as `make book` runs it: warnings are errors, every reference must resolve.
BUILD_ARGS = ["build", ".", "-W", "-n", "--keep-going"]

# Names each chapter's `library` cells must define (CONTRIBUTING.md, notebook conventions).
PUBLIC_NAMES = {
    "01_why_normalize": ["DeepMLP", "init_std", "activation_statistics", "saturation_fraction",
                         "gradient_norms", "load_digits_split", "Checker", "CheckReport",
                         "check_my_init_std", "check_my_standardize", "check_breaking_depth"],
    "02_batch_norm": ["BatchNorm", "batch_norm_backward", "make_mlp", "train_mlp", "evaluate",
                      "load_digits_split", "recompute_batch_norm_statistics", "check_running_update",
                      "check_batch_norm_backward", "check_folded_linear"],
    "03_batch_norm_limits": ["load_digits_split", "make_mlp", "evaluate", "train_mlp",
                             "class_pair_batches", "BatchRenorm1d", "bias_corrected_statistics",
                             "batch_norm_statistics", "population_statistics", "evaluate_with",
                             "shifted", "StepwiseBatchNorm", "EnsembleRNN", "leaky_sign_task",
                             "train_rnn_ensemble", "per_step_accuracy", "EnsembleMLP",
                             "train_ensemble", "ensemble_accuracy", "AllReduceSum",
                             "sync_batch_norm_stats", "SyncedBatchNorm", "GhostBatchNorm",
                             "run_in_processes", "run_data_parallel", "run_single_process",
                             "communication_census", "all_reduce_seconds", "counted_all_reduce",
                             "check_merge_statistics", "check_sync_bytes", "check_bias_correction"],
    "04_layer_norm": ["layer_norm_reference", "layer_norm_backward", "invariance_table",
                      "invariance_changes", "PAPER_TABLE_1", "TABLE_1_COLUMNS",
                      "check_my_layer_norm", "check_my_group_norm", "check_invariance_answer",
                      "check_jacobian_eigenvalues", "statistics_partners", "normalized_dims",
                      "teacher_task", "init_ln_classifier", "train_ln_classifier",
                      "normalization_kernels_called", "table_1_setting"],
    "05_layer_norm_pytorch": ["LayerNorm", "layer_norm", "LayerNormFunction", "layer_norm_input_grad",
                              "check_my_layer_norm", "check_my_rms_norm_function"],
    "06_fast_layer_norm": ["triton_layer_norm", "naive_layer_norm", "layer_norm", "layer_norm_bytes",
                           "layer_norm_flops", "forward_config", "backward_config",
                           "backward_grid", "backward_bytes", "byte_ceiling", "timed_rows",
                           "gpu_spec", "GPU_TARGETS", "MAX_HIDDEN", "compile_for_gpu", "kernel_launch",
                           "triton_version_for_torch", "check_forward_bytes", "check_dw_db"],
    "07_layer_norm_in_practice": ["LNLSTMCell", "LNLSTM", "CharLSTM", "RMSNorm", "rms_norm",
                                  "TransformerLM", "Block", "load_text", "CharVocab", "split_data",
                                  "get_batch", "lr_at", "train_lm", "evaluate_lm", "median_times",
                                  "timing_clock", "ffn_gradient_norms", "residual_branch_ratios",
                                  "generate", "check_my_rms_norm", "check_my_ln_lstm_step",
                                  "builtin_rms_norm_calls"],
}


def book_config() -> dict:
    return yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))


def toc_files(toc_path: Path = REPO_ROOT / "_toc.yml") -> list[str]:
    """Every file listed in the toc (without suffix), root first, in reading order."""
    toc = yaml.safe_load(Path(toc_path).read_text(encoding="utf-8"))
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


def chapter_path(number: str | int) -> Path:
    """The notebook of chapter ``number`` (``1`` or ``"01"``) in notebooks/."""
    prefix = f"{int(number):02d}_"
    matches = sorted(NOTEBOOKS.glob(f"{prefix}*.ipynb"))
    if len(matches) != 1:
        raise FileNotFoundError(
            f"expected exactly one notebook named {prefix}*.ipynb in {NOTEBOOKS}, "
            f"found {[m.name for m in matches]}"
        )
    return matches[0]


def site_url(config: dict | None = None) -> str:
    """The published site's base URL (``html.baseurl`` in _config.yml), ending in a slash."""
    config = config or book_config()
    base = (config.get("html") or {}).get("baseurl")
    if not base:
        raise ValueError("_config.yml sets no html.baseurl: the site's address is unknown")
    return base.rstrip("/") + "/"


def page_url(docname: str, anchor: str = "", config: dict | None = None) -> str:
    """The published address of page ``docname`` (e.g. ``notebooks/04_layer_norm``)."""
    url = f"{site_url(config)}{docname}.html"
    return f"{url}#{anchor}" if anchor else url


def colab_url(notebook_stem: str, config: dict | None = None) -> str:
    """The Colab launch URL of a chapter, as Jupyter Book's launch button builds it."""
    config = config or book_config()
    repository = config["repository"]
    repo = repository["url"].removeprefix("https://github.com/").strip("/")
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    path = (repository.get("path_to_book") or "").strip("/")
    prefix = f"{path}/" if path else ""
    return f"{colab}/github/{repo}/blob/{repository['branch']}/{prefix}notebooks/{notebook_stem}.ipynb"


def jupyter_book_executable() -> Path:
    return Path(sys.executable).parent / "jupyter-book"


def build(book_dir: Path = REPO_ROOT, **kwargs) -> subprocess.CompletedProcess:
    """Build the book in ``book_dir`` exactly as `make book` does."""
    return subprocess.run([str(jupyter_book_executable()), *BUILD_ARGS], cwd=book_dir, **kwargs)
