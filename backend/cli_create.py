"""How ``sslwb train`` and ``sslwb launch`` turn their options into a run directory (rank 0 only,
its writer lock held) - the one place a new run is created from the command line."""

from __future__ import annotations

import sys

from .errors import ConfigError, WorkbenchError


def new_run_setup(args, cfg):
    """The rank-0 setup of ``sslwb train`` / ``sslwb launch``: a callable returning the run
    directory (created with its config.json for a new run, like ``sslwb train`` always did)
    with its writer lock held. ``cfg``: the config from --config/--preset/--set, or None."""
    from .cli import _config_from_args
    from .run_start import existing_run, lock_run
    from .runs import CONFIG_FILE, create_run, write_run_config

    def setup():
        run_dir = args.run_dir
        has_config = run_dir is not None and (run_dir / CONFIG_FILE).exists()
        if cfg is None and has_config:
            return existing_run(run_dir)()
        if getattr(args, "resume", False):
            raise ConfigError("--resume continues a run with its own config.json: drop --config/--preset/--set")
        if has_config:
            raise ConfigError(f"{run_dir} already holds a run; use --resume to continue it or another --run-dir")
        new_cfg = cfg or _config_from_args(args)
        if run_dir is None:
            run_dir = create_run(args.workspace, new_cfg)
            lock = lock_run(run_dir)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = lock_run(run_dir)
            if (run_dir / CONFIG_FILE).exists():  # another process created it meanwhile
                lock.release()
                raise ConfigError(f"{run_dir} already holds a run; use --resume to continue it or another --run-dir")
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            write_run_config(run_dir, new_cfg)
        print(f"run directory: {run_dir}", file=sys.stderr)
        return run_dir, lock

    return setup


def args_config(args, is_main: bool = True):
    """(config from --config/--preset/--set or None when none is given, exit code or None). A bad
    config is reported once (rank 0, as ``sslwb train`` does) and every rank gets its code."""
    from .cli import _config_from_args, _report_error

    if not (args.config or args.preset or args.overrides):
        return None, None
    try:
        return _config_from_args(args), None
    except WorkbenchError as exc:
        return None, _report_error(exc, args.run_dir) if is_main else exc.exit_code
