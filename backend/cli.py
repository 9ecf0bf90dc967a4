"""The ``sslwb`` command line: gui | train | eval | inspect | export (also ``python -m backend``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ConfigError, WorkbenchError


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sslwb", description="SSL Workbench: self-supervised learning experiments")
    sub = parser.add_subparsers(dest="command", required=True)

    gui = sub.add_parser("gui", help="start the desktop app")
    gui.add_argument("rest", nargs=argparse.REMAINDER, help="options for the app (--screenshot PATH, --run-dir DIR)")

    train = sub.add_parser("train", help="train a run (new from --config/--preset, or an existing run dir)")
    train.add_argument("--config", type=Path, help="TOML or JSON experiment config")
    train.add_argument("--preset", help="a preset from resources/presets (e.g. quick, simclr, moco)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                       help="override a config field, e.g. --set optim.lr=0.1 (repeatable)")
    train.add_argument("--run-dir", type=Path, help="run directory (created when given with --config/--preset)")
    train.add_argument("--workspace", type=Path, default=Path("workspace"),
                       help="where a new run directory is made when --run-dir is not given")
    train.add_argument("--resume", action="store_true", help="continue from checkpoints/last.pt with the run's config.json")
    train.add_argument("--exit-on-stdin-eof", action="store_true",
                       help="stop (after a checkpoint) when stdin closes: used by the GUI")
    train.add_argument("--no-stdin", action="store_true", help="do not read control commands from stdin")
    train.add_argument("--nproc", type=int, default=1,
                       help="processes (GPUs) to train on: relaunches itself under torchrun with DDP")

    ev = sub.add_parser("eval", help="kNN top-1 of a run's checkpoint")
    ev.add_argument("--run-dir", type=Path, required=True)
    ev.add_argument("--checkpoint", type=Path, help="checkpoint file (default: RUN/checkpoints/last.pt)")
    ev.add_argument("--k", type=int, default=200)
    ev.add_argument("--temperature", type=float, default=0.1)
    ev.add_argument("--features", choices=("backbone", "projector"), default="backbone")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--random-init", action="store_true", help="evaluate the same architecture at random init")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _config_from_args(args) -> "ExperimentConfig":  # noqa: F821
    from .config import ExperimentConfig, deep_merge, load_config, parse_override, preset_dict

    overrides: dict = {}
    for text in args.overrides:
        overrides = deep_merge(overrides, parse_override(text))
    if args.config:
        return load_config(args.config, overrides)
    if args.preset:
        return ExperimentConfig.from_dict(deep_merge(preset_dict(args.preset), overrides))
    return ExperimentConfig.from_dict(overrides)


def _report_error(exc: WorkbenchError, run_dir: Path | None) -> int:
    """One-sentence error on stderr, as an error event on stdout and in the run's events.jsonl."""
    from .events import EventWriter

    errors = getattr(exc, "errors", None) or [str(exc)]
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        writer = EventWriter(run_dir / "events.jsonl", echo=True)
        writer.error(str(exc), exc.exit_code)
        writer.close()
    else:
        print(json.dumps({"kind": "error", "message": str(exc), "exit_code": exc.exit_code}))
    return exc.exit_code


def cmd_train(args) -> int:
    from .control import TrainerControl
    from .runs import CONFIG_FILE, create_run, write_run_config
    from .train import run_training

    run_dir = args.run_dir
    try:
        has_config = run_dir is not None and (run_dir / CONFIG_FILE).exists()
        if args.config or args.preset or args.overrides or not has_config:
            if args.resume:
                raise ConfigError("--resume continues a run with its own config.json: drop --config/--preset/--set")
            if run_dir is not None and has_config:
                raise ConfigError(f"{run_dir} already holds a run; use --resume to continue it or another --run-dir")
            cfg = _config_from_args(args)
            if run_dir is None:
                run_dir = create_run(args.workspace, cfg)
            else:
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "checkpoints").mkdir(exist_ok=True)
                write_run_config(run_dir, cfg)
            print(f"run directory: {run_dir}", file=sys.stderr)
    except WorkbenchError as exc:
        return _report_error(exc, args.run_dir)
    if args.nproc > 1:
        return _relaunch_with_torchrun(args, run_dir)
    control = TrainerControl(read_stdin=not args.no_stdin,
                             exit_on_eof=args.exit_on_stdin_eof)
    control.install_signal_handlers()
    return run_training(run_dir, resume=args.resume, control=control, tty=sys.stdout.isatty())


def _relaunch_with_torchrun(args, run_dir: Path) -> int:
    """Run ``python -m backend train`` under torchrun (one process per device, DDP)."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "backend", "train", "--run-dir", str(run_dir)]
    if args.resume:
        cmd.append("--resume")
    if args.exit_on_stdin_eof:
        cmd.append("--exit-on-stdin-eof")
    if args.no_stdin:
        cmd.append("--no-stdin")
    return subprocess.call(cmd)


def cmd_eval(args) -> int:
    from .evaluate import evaluate_knn_checkpoint

    try:
        result = evaluate_knn_checkpoint(args.run_dir, checkpoint=args.checkpoint, k=args.k,
                                         temperature=args.temperature, features=args.features,
                                         device=args.device, random_init=args.random_init,
                                         on_warning=lambda m: print(f"warning: {m}", file=sys.stderr))
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(result))
    else:
        what = "random-init encoder" if args.random_init else result["checkpoint"]
        print(f"kNN top-1 {result['top1']:.4f}  ({what}; k={result['k']}, T={result['temperature']}, "
              f"{result['features']} features, bank {result['bank_size']} train images, "
              f"{result['queries']} test images)")
    return 0


def cmd_gui(args) -> int:
    import importlib

    app = importlib.import_module("workbench.app")
    return app.main(args.rest)


def main(argv=None) -> int:
    """Entry point of ``sslwb``; returns the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    handlers = {"train": cmd_train, "eval": cmd_eval, "gui": cmd_gui}
    extra = _extra_commands()
    handler = handlers.get(args.command) or extra.get(args.command)
    return handler(args)


def _extra_commands() -> dict:
    """inspect/export handlers registered by their modules (added with issue 6)."""
    return {}


def entry() -> None:
    """Console-script wrapper: exit with main()'s code."""
    sys.exit(main())
