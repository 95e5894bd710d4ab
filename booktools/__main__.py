"""``python -m booktools build``: build the book exactly as `make book` does."""

import sys

from booktools.book import build


def main(argv: list[str]) -> int:
    if argv != ["build"]:
        print("usage: python -m booktools build", file=sys.stderr)
        return 2
    return build().returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
