"""devscripts/gpu.sh: misuse is one line on stderr and exit 2 (its full chain runs in ``gpu.sh selftest``);
devscripts/chat_state.sh carries a run across a lost machine (save → runs/ gone → restore gives the same files)."""

import os
import shutil
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


def test_chat_state_save_then_restore_brings_back_a_lost_run(tmp_path):
    repo = tmp_path / "repo"
    (repo / "devscripts").mkdir(parents=True)
    shutil.copy(ROOT / "devscripts" / "chat_state.sh", repo / "devscripts")
    ckpt = repo / "runs" / "chat" / "av_sft6" / "checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "state.pt").write_bytes(b"weights")
    (ckpt.parent / "metrics.jsonl").write_text('{"step": 150}\n')
    (ckpt.parent / "av").mkdir()
    (ckpt.parent / "av" / "adapter.safetensors").write_bytes(b"export")
    env = {**os.environ, "NLA_AUDIT_CACHE": str(tmp_path / "cache")}

    def run(*args):
        return subprocess.run(["bash", str(repo / "devscripts" / "chat_state.sh"), *args], check=False,
                              capture_output=True, text=True, env=env)

    assert run("save").returncode == 0
    assert not (repo / "resume/chat/av_sft6/checkpoint").exists()  # ~60 MB: carried only with CKPT=1
    env["CKPT"] = "1"
    assert run("save").returncode == 0
    shutil.rmtree(repo / "runs")  # a new machine: the work tree is laid anew, runs/ is gone
    r = run("restore")
    assert r.returncode == 0 and "restored chat/av_sft6/checkpoint" in r.stdout
    assert (repo / "runs").is_symlink()  # the new runs/ lives in the cache folder, outside the work tree
    assert (repo / "runs/chat/av_sft6/checkpoint/state.pt").read_bytes() == b"weights"
    assert (repo / "runs/chat/av_sft6/metrics.jsonl").read_text() == '{"step": 150}\n'
    assert (repo / "runs/chat/av_sft6/av/adapter.safetensors").read_bytes() == b"export"
    bad = run("bogus")
    assert bad.returncode == 2 and bad.stderr.startswith("usage:")
