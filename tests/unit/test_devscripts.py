"""devscripts/gpu.sh: misuse is one line on stderr and exit 2 (its full chain runs in ``gpu.sh selftest``)."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args", [[], ["bogus"], ["stage"], ["stage", "p9"]])
def test_gpu_script_misuse_is_one_line_and_exit_2(args, tmp_path):
    env = {**os.environ, "NLA_GPU_STAGE": str(tmp_path / "stage")}
    r = subprocess.run(["bash", str(ROOT / "devscripts" / "gpu.sh"), *args], check=False, capture_output=True,
                       text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("gpu.sh: ")
