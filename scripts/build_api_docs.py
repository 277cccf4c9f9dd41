"""Build the API reference of zsgjax from its docstrings with pdoc (HTML, offline).

    python scripts/build_api_docs.py                 # writes build/api/ (git-ignored)
    python scripts/build_api_docs.py --out site/api

Every public module is documented, subpackages included; the integrations that need
optional packages (``zsgjax.adapters.*``, ``zsgjax.offline.control.minari_io``) import
them lazily, so the build needs only zsgjax's core dependencies and pdoc
(``pip install -e '.[docs]'``). Exits non-zero if a module fails to import.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import pkgutil
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def public_modules() -> list[str]:
    """``zsgjax`` and every submodule whose dotted name has no part starting with ``_``."""
    import zsgjax

    names = ["zsgjax"]
    for info in pkgutil.walk_packages(zsgjax.__path__, prefix="zsgjax."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def build(out: str) -> list[str]:
    """Render the reference into ``out`` (one HTML page per module + index); returns the modules."""
    import pdoc
    import pdoc.render

    modules = public_modules()
    pdoc.render.configure(docformat="markdown", show_source=True, search=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pdoc.pdoc(*modules, output_directory=pathlib.Path(out))
    return modules


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(ROOT, "build", "api"), help="output folder (default: build/api)")
    args = p.parse_args(argv)
    modules = build(args.out)
    print(f"wrote the API reference of {len(modules)} modules to {args.out}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
