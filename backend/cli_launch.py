"""``sslwb launch --slurm``: create the run directory like ``sslwb train`` does, then write a
ready sbatch script (``backend.launch.write_slurm_script``) that trains it on N nodes x G GPUs."""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPT_NAME = "slurm.sbatch"


def add_launch_parser(sub, add_run_args) -> None:
    """The ``launch`` subcommand; ``add_run_args`` adds train's --config/--preset/--set/--run-dir."""
    launch = sub.add_parser("launch", help="create a run and write a SLURM batch script that trains it on "
                                           "several nodes (torchrun + DDP)")
    add_run_args(launch)
    launch.add_argument("--slurm", action="store_true", help="write a SLURM sbatch script (the one launcher)")
    launch.add_argument("--nodes", type=int, default=1, help="nodes of the job")
    launch.add_argument("--gpus-per-node", type=int, default=1, help="GPUs (processes) per node")
    launch.add_argument("--time", default="24:00:00", help="SLURM time limit ([D-]HH:MM:SS or minutes)")
    launch.add_argument("--partition", help="SLURM partition")
    launch.add_argument("--job-name", default="sslwb", help="SLURM job name")
    launch.add_argument("--out", type=Path, help=f"where to write the script (default: RUN/{SCRIPT_NAME})")


def cmd_launch(args) -> int:
    """Create (or check) the run, release it, write the sbatch script and say how to submit it."""
    from .cli import _report_error
    from .cli_create import args_config, new_run_setup
    from .distributed import DistInfo
    from .errors import ConfigError, WorkbenchError
    from .launch import slurm_script, write_slurm_script
    from .run_start import open_run

    if not args.slurm:
        return _report_error(ConfigError("sslwb launch needs --slurm (the only launcher so far)"), None)
    options = dict(job_name=args.job_name, time=args.time, partition=args.partition)
    try:
        slurm_script([], args.nodes, args.gpus_per_node, **options)  # bad job options: no run is created
    except WorkbenchError as exc:
        return _report_error(exc, None)
    cfg, code = args_config(args)
    if code is not None:
        return code
    opened = open_run(DistInfo(), new_run_setup(args, cfg), lambda exc: _report_error(exc, args.run_dir))
    if isinstance(opened, int):
        return opened
    opened.release()  # the job's rank 0 takes the lock when it starts
    try:
        script = write_slurm_script(args.out or opened.run_dir / SCRIPT_NAME, [], args.nodes, args.gpus_per_node,
                                    run_dir=opened.run_dir, **options)
    except OSError as exc:
        print(f"error: could not write the script {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {script} ({args.nodes} node(s) x {args.gpus_per_node} GPU(s))")
    print(f"submit it with: sbatch {script}")
    return 0
