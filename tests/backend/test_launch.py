"""SLURM launcher: the sbatch script's directives, rendezvous, arguments and quoting."""

import os
import shutil
import subprocess

import pytest

from backend.errors import ConfigError
from backend.launch import slurm_script, write_slurm_script

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def _directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#SBATCH")]


def test_every_directive_is_written():
    text = slurm_script(["--config", "exp.toml"], 4, 8, job_name="byol-in1k", time="2-00:00:00",
                        partition="gpu", cpus_per_gpu=6)
    assert text.startswith("#!/bin/bash\n")
    assert _directives(text) == [
        "#SBATCH --job-name=byol-in1k", "#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8", "#SBATCH --cpus-per-task=48", "#SBATCH --time=2-00:00:00",
        "#SBATCH --output=byol-in1k-%j.out", "#SBATCH --partition=gpu"]
    assert "--partition" not in slurm_script([], 1, 1)


def test_rendezvous_comes_from_the_slurm_environment():
    text = slurm_script(["--config", "exp.toml"], 2, 4)
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in text
    assert "SLURM_JOB_ID % 1000" in text
    flat = text.replace("\\\n", " ")
    assert " ".join(flat.split()).count(
        'srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node 4 --rdzv_backend c10d '
        '--rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv_id "$SLURM_JOB_ID" '
        '-m backend train "${TRAIN_ARGS[@]}"') == 1


def _run_with_fake_slurm(tmp_path, script_path, extra_env=None):
    """Run the script with stub srun/scontrol on PATH; the argv srun got, one item a line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    hosts = "\n".join(f"gpu-node-{i:02d}" for i in range(7, 7 + 5000))   # enough to hit SIGPIPE
    (bin_dir / "scontrol").write_text(f"#!/bin/bash\ncat <<'EOF'\n{hosts}\nEOF\n")
    (bin_dir / "srun").write_text('#!/bin/bash\nprintf "%s\\n" "MASTER=$MASTER_ADDR:$MASTER_PORT" "$@"\n')
    for stub in ("scontrol", "srun"):
        (bin_dir / stub).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-node-[07-08]",
           "SLURM_NNODES": "2", "SLURM_JOB_ID": "123456", **(extra_env or {})}
    done = subprocess.run(["bash", str(script_path)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@needs_bash
def test_train_options_pass_through_with_safe_quoting(tmp_path):
    config = tmp_path / "my configs" / "it's $HOME.toml"
    args = ["--config", str(config), "--set", "optim.lr=0.1", "--set", 'data.source=imagefolder:/d a/"x"']
    path = write_slurm_script(tmp_path / "job.sbatch", args, 2, 4)
    assert os.access(path, os.X_OK)
    subprocess.run(["bash", "-n", str(path)], check=True, timeout=30)
    argv = _run_with_fake_slurm(tmp_path, path)
    assert argv == ["MASTER=gpu-node-07:29956", "torchrun", "--nnodes", "2", "--nproc_per_node", "4",
                    "--rdzv_backend", "c10d", "--rdzv_endpoint", "gpu-node-07:29956", "--rdzv_id", "123456",
                    "-m", "backend", "train", *args, "--no-stdin"]


@needs_bash
def test_run_dir_is_added_and_resumed_when_a_checkpoint_exists(tmp_path):
    run_dir = tmp_path / "runs with spaces" / "r1"
    path = write_slurm_script(tmp_path / "job.sh", [], 1, 2, run_dir=run_dir, setup=["echo setup >&2"])
    argv = _run_with_fake_slurm(tmp_path, path)
    assert argv[-4:] == ["train", "--no-stdin", "--run-dir", str(run_dir)]
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"")
    argv = _run_with_fake_slurm(tmp_path, path)
    assert argv[-3:] == ["--run-dir", str(run_dir), "--resume"]


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="nodes must be a positive integer"):
        slurm_script([], 0, 1)
    with pytest.raises(ConfigError, match="gpus_per_node"):
        slurm_script([], 1, 1.5)
    with pytest.raises(ConfigError, match="time must look like"):
        slurm_script([], 1, 1, time="tomorrow")
    with pytest.raises(ConfigError, match="job_name"):
        slurm_script([], 1, 1, job_name="my job")
    with pytest.raises(ConfigError, match="partition"):
        slurm_script([], 1, 1, partition="gpu; rm -rf /")
    with pytest.raises(ConfigError, match="newlines"):
        slurm_script(["--config", "a\nb"], 1, 1)
    with pytest.raises(ConfigError, match="--nproc"):
        slurm_script(["--nproc", "4"], 1, 1)
    with pytest.raises(ConfigError, match="run directory once"):
        slurm_script(["--run-dir", "x"], 1, 1, run_dir="y")
