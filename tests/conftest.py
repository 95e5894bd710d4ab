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
from booktools.site_report import CHROMIUM_ARGS, DESKTOP_CONTEXT, chromium_launch_options  # noqa: E402


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


# Browser tests (tests/test_site*.py) use pytest-playwright's `browser`, `context` and
# `page` fixtures: one browser per session, a new context (cold cache) and page per test.
# These two overrides of its option fixtures make it drive Debian's Chromium and give
# every context the desktop window; a test changes that with
# @pytest.mark.browser_context_args(...).


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args, browser_name):
    """Debian's /usr/bin/chromium (a browser is never downloaded), with pytest-playwright's
    own options on top: --headed, --slowmo, and --browser-channel to drive an installed
    Chrome or Edge instead."""
    if browser_name != "chromium":
        pytest.fail(f"the site is tested in Chromium only, not {browser_name}")
    if "channel" in browser_type_launch_args:
        options = {"args": list(CHROMIUM_ARGS), "headless": True}
    else:
        try:
            options = chromium_launch_options()
        except FileNotFoundError as error:
            pytest.fail(str(error))
    options.update(browser_type_launch_args)
    if options["headless"] is False:
        options["args"] = [arg for arg in options["args"] if arg != "--headless"]
    return options


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, **DESKTOP_CONTEXT}
