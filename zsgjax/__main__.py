"""``python -m zsgjax``: the same command line as ``zsgjax`` (see :mod:`zsgjax.cli`)."""

from zsgjax.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
