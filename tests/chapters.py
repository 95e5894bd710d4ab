"""What the tests know about the book's chapters, read from the book's own files."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent

# Names each chapter's `library` cells must define (CONTRIBUTING.md, notebook conventions).
PUBLIC_NAMES = {
    "01_why_normalize": ["DeepMLP", "activation_statistics", "gradient_norms", "load_digits_data"],
    "02_batch_norm": ["BatchNorm", "batch_norm_backward", "make_mlp", "train", "load_digits_tensors",
                      "check_running_update", "check_batch_norm_backward", "check_folded_linear"],
    "03_batch_norm_limits": ["load_digits_split", "make_mlp", "evaluate", "train_mlp",
                             "class_pair_batches", "StepwiseBatchNorm", "RecurrentClassifier",
                             "digit_rows", "train_rnn", "EnsembleMLP", "train_ensemble",
                             "AllReduceSum", "sync_batch_norm_stats", "SyncedBatchNorm",
                             "run_data_parallel", "run_single_process", "ensemble_accuracy",
                             "counted_all_reduce", "check_merge_statistics", "check_sync_bytes"],
    "04_layer_norm": ["layer_norm_reference", "layer_norm_backward", "invariance_table",
                      "invariance_changes", "PAPER_TABLE_1", "TABLE_1_COLUMNS",
                      "check_my_layer_norm", "check_my_group_norm", "check_invariance_answer",
                      "check_jacobian_eigenvalues", "statistics_partners"],
    "05_layer_norm_pytorch": ["LayerNorm", "layer_norm"],
    "06_fast_layer_norm": ["triton_layer_norm"],
    "07_layer_norm_in_practice": ["LNLSTMCell", "LNLSTM", "CharLSTM", "RMSNorm", "rms_norm",
                                  "TransformerLM", "Block", "load_text", "CharVocab", "split_data",
                                  "get_batch", "train_lm", "evaluate", "ffn_gradient_norms",
                                  "generate", "check_my_rms_norm", "check_my_ln_lstm_step"],
}


def book_config() -> dict:
    return yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))


def toc_files(toc_path: Path = REPO_ROOT / "_toc.yml") -> list[str]:
    """Every file listed in the toc (without suffix), root first, in reading order."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
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
