"""SLURM batch scripts that train one run on several nodes (torchrun + DDP, c10d rendezvous).

``slurm_script(train_args, nodes, gpus_per_node, ...)`` returns the text of an sbatch script:
one task per node (``srun``), each a ``torchrun`` that starts ``gpus_per_node`` processes of
``python -m backend train <train_args>``. The rendezvous host is the job's first node
(``scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1``), the port is derived from the job
id (so two jobs sharing a node do not collide), and the rendezvous id is ``$SLURM_JOB_ID``.

Every process of the job must train the same run, so the run directory should exist before the
job starts (on a filesystem all nodes see) and be passed as ``run_dir``: the script then adds
``--run-dir DIR`` and, when ``DIR/checkpoints/last.pt`` exists at start, ``--resume`` - so a
requeued or resubmitted job continues where it stopped. ``--no-stdin`` is always added (batch
jobs have no controlling terminal to read commands from). Arguments are quoted with ``shlex``;
``setup`` lines (``module load ...``, ``source venv/bin/activate``) are inserted verbatim.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Sequence

from .errors import ConfigError

DEFAULT_PORT_BASE = 29500
_TIME_RE = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$|^\d+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


def _positive(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def _checked(value: str, what: str, pattern: re.Pattern, example: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigError(f"{what} must look like {example}, got {value!r}")
    return value


def _train_args(train_args: Sequence[str], run_dir) -> tuple[str, str]:
    """(the quoted fixed arguments, the run dir quoted or '')."""
    args = [str(a) for a in train_args]
    if any("\n" in a or "\0" in a for a in args):
        raise ConfigError("train arguments must not contain newlines or NUL characters")
    if run_dir is not None and "--run-dir" in args:
        raise ConfigError("give the run directory once: as run_dir or as --run-dir in the train arguments")
    if "--nproc" in args or any(a.startswith("--nproc=") for a in args):
        raise ConfigError("--nproc is for a single machine; the SLURM job sets the process count")
    if "--no-stdin" not in args:
        args.append("--no-stdin")
    quoted_dir = shlex.quote(str(Path(run_dir).expanduser().absolute())) if run_dir is not None else ""
    return shlex.join(args), quoted_dir


def slurm_script(train_args: Sequence[str], nodes: int, gpus_per_node: int, *,
                 job_name: str = "sslwb", time: str = "24:00:00", partition: str | None = None,
                 cpus_per_gpu: int = 8, run_dir=None, setup: Sequence[str] = (),
                 output: str | None = None, torchrun: str = "torchrun",
                 port_base: int = DEFAULT_PORT_BASE) -> str:
    """The text of an sbatch script training ``train_args`` on ``nodes`` x ``gpus_per_node`` GPUs.

    ``train_args``: options for ``python -m backend train`` (e.g. ``["--config", "exp.toml"]``).
    ``time``: SLURM's ``[D-]HH:MM:SS`` (or minutes). ``cpus_per_gpu``: data-loading cores per
    process (``--cpus-per-task`` = cpus_per_gpu x gpus_per_node). ``run_dir``: see the module
    docstring. ``output``: the log file pattern (default ``<job_name>-%j.out``). ``torchrun``:
    the launcher command (e.g. ``python -m torch.distributed.run`` where torchrun is not on PATH).
    Bad values raise ConfigError."""
    nodes = _positive(nodes, "nodes")
    gpus = _positive(gpus_per_node, "gpus_per_node")
    cpus = _positive(cpus_per_gpu, "cpus_per_gpu") * gpus
    _checked(job_name, "job_name", _NAME_RE, "letters, digits, _ . + - (no spaces)")
    _checked(time, "time", _TIME_RE, "HH:MM:SS, D-HH:MM:SS or minutes")
    if partition is not None:
        _checked(partition, "partition", _NAME_RE, "a partition name (no spaces)")
    port_base = _positive(port_base, "port_base")
    if port_base + 999 > 65535:
        raise ConfigError(f"port_base must leave room for 1000 ports below 65536, got {port_base}")
    output = output or f"{job_name}-%j.out"
    if "\n" in output or any("\n" in line for line in setup) or "\n" in torchrun:
        raise ConfigError("output, setup lines and torchrun must be single lines")
    fixed_args, quoted_dir = _train_args(train_args, run_dir)

    directives = [f"#SBATCH --job-name={job_name}", f"#SBATCH --nodes={nodes}",
                  "#SBATCH --ntasks-per-node=1", f"#SBATCH --gpus-per-node={gpus}",
                  f"#SBATCH --cpus-per-task={cpus}", f"#SBATCH --time={time}",
                  f"#SBATCH --output={shlex.quote(output)}"]
    if partition:
        directives.append(f"#SBATCH --partition={partition}")
    lines = ["#!/bin/bash", f"# SSL Workbench: {nodes} node(s) x {gpus} GPU(s), written by backend.launch",
             *directives, "", "set -euo pipefail", *setup, "",
             "# the first node hosts the rendezvous (pipefail off there: head closing the pipe early",
             "# would fail the pipeline with SIGPIPE)",
             'MASTER_ADDR="$(set +o pipefail; scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
             'if [ -z "$MASTER_ADDR" ]; then echo "cannot resolve the first node of $SLURM_JOB_NODELIST" >&2; exit 1; fi',
             f'MASTER_PORT="$(( {port_base} + SLURM_JOB_ID % 1000 ))"',
             "export MASTER_ADDR MASTER_PORT",
             f"export OMP_NUM_THREADS={max(1, cpus // gpus)}", ""]
    train = f"TRAIN_ARGS=({fixed_args})"
    lines.append(train)
    if quoted_dir:
        lines += [f"RUN_DIR={quoted_dir}", 'TRAIN_ARGS+=(--run-dir "$RUN_DIR")',
                  'if [ -f "$RUN_DIR/checkpoints/last.pt" ]; then TRAIN_ARGS+=(--resume); fi']
    lines += ["",
              f"srun {torchrun} --nnodes \"$SLURM_NNODES\" --nproc_per_node {gpus} \\",
              "    --rdzv_backend c10d --rdzv_endpoint \"$MASTER_ADDR:$MASTER_PORT\" "
              "--rdzv_id \"$SLURM_JOB_ID\" \\",
              "    -m backend train \"${TRAIN_ARGS[@]}\"", ""]
    return "\n".join(lines)


def write_slurm_script(path, train_args: Sequence[str], nodes: int, gpus_per_node: int,
                       **options) -> Path:
    """Write ``slurm_script(...)`` to ``path`` (mode 0755) and return the path; submit it with
    ``sbatch <path>``. ``options`` are ``slurm_script``'s keyword arguments."""
    path = Path(path)
    text = slurm_script(train_args, nodes, gpus_per_node, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path
