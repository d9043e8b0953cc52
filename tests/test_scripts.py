"""scripts/bootstrap.sh: what it refuses before it installs anything."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _old_python() -> str:
    """A real Python older than 3.11 on this machine, else the test is skipped."""
    found = [shutil.which(f"python3.{minor}") for minor in (10, 9, 8)]
    found += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")))
    for path in filter(None, found):
        done = subprocess.run(
            [path, "-c", "import sys; print(sys.version_info < (3, 11))"],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0 and done.stdout.strip() == "True":
            return path
    pytest.skip("no Python older than 3.11 on this machine")


def _bootstrap(venv: Path, python: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RECSYS_VENV": str(venv), "PYTHON": python}
    script = f"source {ROOT / 'scripts' / 'bootstrap.sh'}; echo sourced"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)


def test_a_python_older_than_311_is_refused_before_a_venv_is_made(tmp_path):
    venv = tmp_path / "venv"
    done = _bootstrap(venv, _old_python())
    assert done.returncode == 2, done.stderr
    assert "is not Python >= 3.11" in done.stderr and "PYTHON=python3.11" in done.stderr
    assert "sourced" not in done.stdout
    assert not venv.exists()  # nothing left that a run with the right Python would reuse


def test_a_venv_made_by_an_older_python_says_to_remove_it(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([_old_python(), "-m", "venv", "--without-pip", str(venv)], check=True)
    done = _bootstrap(venv, "python3")
    assert done.returncode == 2, done.stderr
    assert f"remove {venv}" in done.stderr and "needs Python >= 3.11" in done.stderr
    assert "sourced" not in done.stdout
