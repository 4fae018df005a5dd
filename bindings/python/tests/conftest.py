"""Fixtures shared by the package's tests."""

import os
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture
def offrl_bin():
    """The `offrl` command: $OFFRL_BIN, the PATH's, or this checkout's build (debug, release)."""
    exe = os.environ.get("OFFRL_BIN") or shutil.which("offrl")
    for candidate in (ROOT / "target" / "debug" / "offrl", ROOT / "target" / "release" / "offrl"):
        if exe is None and candidate.exists():
            exe = str(candidate)
    if exe is None:
        pytest.skip("no offrl binary (cargo build, or OFFRL_BIN)")
    return exe
