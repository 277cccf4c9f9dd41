"""Every fenced Python block of README.md and docs/*.md runs as written.

The blocks of one page run in order in one namespace (a later block may use what an
earlier one defined), in a temporary working directory. HTML comments on the lines
right above a fence set how a block runs:

* ``<!-- slow -->``: a heavy run. The default suite runs a page's other blocks; the
  ``slow`` variant of the page's test runs all of them.
* ``<!-- env: NAME=value ... -->``: the block runs alone in a subprocess with these
  environment variables set before jax starts (e.g. virtual CPU devices).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*(slow|env:\s*(.*?))\s*-->\s*$")


def code_blocks(path: pathlib.Path) -> list[tuple[int, str, bool, dict[str, str]]]:
    """``(line, code, slow, env)`` of every ```python block of a Markdown page."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise AssertionError(f"{path.name}:{i + 1}: code fence is never closed")
        if fence.group(1) in ("python", "py"):
            slow, env, k = False, {}, i - 1
            while k >= 0 and (directive := _DIRECTIVE.match(lines[k].strip())):
                if directive.group(1) == "slow":
                    slow = True
                else:
                    env.update(item.split("=", 1) for item in directive.group(2).split())
                k -= 1
            blocks.append((i + 1, "\n".join(lines[i + 1:end]) + "\n", slow, env))
        i = end + 1
    return blocks


def _cases():
    for page in PAGES:
        blocks = code_blocks(page)
        name = str(page.relative_to(ROOT))
        if any(not slow for _, _, slow, _ in blocks):
            yield pytest.param(page, False, id=name)
        if any(slow for _, _, slow, _ in blocks):
            yield pytest.param(page, True, id=f"{name}:all", marks=[pytest.mark.slow])


@pytest.mark.parametrize(("page", "include_slow"), list(_cases()))
def test_page_code_runs(page, include_slow, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for line, code, slow, env in code_blocks(page):
        if slow and not include_slow:
            continue
        if env:
            done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, **env},
                                  capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"{page.name}:{line} failed:\n{done.stdout}\n{done.stderr}"
        else:
            exec(compile(code, f"{page.name}:{line}", "exec", dont_inherit=True), namespace)  # not this file's __future__ flags


def test_blocks_are_found_and_directives_parse(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n<!-- slow -->\n<!-- env: A=1 B=x=y -->\n```python\nx = 1\n```\n```bash\nls\n```\n")
    assert code_blocks(page) == [(4, "x = 1\n", True, {"A": "1", "B": "x=y"})]
    page.write_text("```python\nx = 1\n")
    with pytest.raises(AssertionError, match="never closed"):
        code_blocks(page)


def test_every_page_has_its_links():
    """Relative links and images of every page point at files that exist."""
    missing = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
    assert not missing, "broken links:\n" + "\n".join(missing)


def test_package_is_typed():
    assert (ROOT / "zsgjax" / "py.typed").exists()


@pytest.mark.slow
def test_api_reference_builds(tmp_path):
    """``scripts/build_api_docs.py`` renders every public module from its docstrings."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_api_docs.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "index.html").exists()
    for page in ("zsgjax.html", "zsgjax/train.html", "zsgjax/offline/control/perm.html", "zsgjax/adapters/gymnax.html"):
        assert (tmp_path / page).stat().st_size > 1000, page
    assert "make_train" in (tmp_path / "zsgjax" / "train.html").read_text()
