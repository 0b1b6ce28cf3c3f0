"""The code stays ruff-clean and passes mypy --strict, as CI checks it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # the package supports 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, cwd: Path = ROOT) -> None:
    out = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_lint_and_format() -> None:
    """ruff finds nothing to fix or reformat."""
    _run("ruff", "check", ".")
    _run("ruff", "format", "--check", ".")


def test_mypy_strict(tmp_path: Path) -> None:
    """mypy --strict passes on the package, laid out as pyproject's package-dir installs it."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    for package, folder in sorted(package_dir.items()):
        target = tmp_path.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in (ROOT / folder).glob("*.py"):
            (target / source.name).symlink_to(source)
    _run("mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "nbrelay", cwd=tmp_path)
