import os

# Triton reads this when it is imported: run kernels on the CPU interpreter
# unless a real GPU is present.
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:  # pragma: no cover - torch is in requirements.txt
    pass
