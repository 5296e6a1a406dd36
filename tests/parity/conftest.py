import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def rwkvx_bin():
    path = os.environ.get("RWKVX_BIN", os.path.join(REPO, "build", "rwkvx"))
    if not os.path.exists(path):
        pytest.fail(f"rwkvx binary not found at {path} (build first, or set RWKVX_BIN)")
    return path


@pytest.fixture(scope="session")
def oracle_py():
    return [sys.executable, os.path.join(REPO, "tests", "parity", "oracle.py")]
