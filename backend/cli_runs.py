"""The ``sslwb sweep``, ``queue``, ``report`` and ``export-csv`` commands (parsers and handlers)."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import ConfigError, WorkbenchError


def add_parsers(sub) -> None:
    """Add sweep, queue, report and export-csv to the ``sslwb`` subparsers."""
    sw = sub.add_parser("sweep", help="a grid or random sweep: one run per point, queued and run")
    sw.add_argument("--config", type=Path, help="TOML or JSON experiment config (the sweep's base)")
    sw.add_argument("--preset", help="a preset from resources/presets")
    sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a base config field (repeatable)")
    sw.add_argument("--workspace", type=Path, default=Path("workspace"), help="where the runs and queue.json live")
    sw.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                    help="grid axis (repeatable; the sweep is their cartesian product)")
    sw.add_argument("--random", type=int, default=0, metavar="N", help="N random points of the --space fields")
    sw.add_argument("--space", action="append", default=[], metavar="FIELD=SPEC",
                    help="random-search field: V1,V2,... (choices), uniform:LO:HI or log-uniform:LO:HI")
    sw.add_argument("--seed", type=int, default=0, help="seed of --random")
    sw.add_argument("--name", default="", help="sweep name (run names become NAME-i)")
    sw.add_argument("--device", help="device to queue the runs on (default: the config's runtime.device)")
    sw.add_argument("--no-run", action="store_true", help="create and enqueue the runs only")
    sw.add_argument("--max-cpu-runs", type=int, default=1, help="runs trained at once on the CPU")

    qu = sub.add_parser("queue", help="list the workspace's run queue; --run trains what is queued")
    qu.add_argument("--workspace", type=Path, default=Path("workspace"))
    qu.add_argument("--run", action="store_true", help="start queued runs as slots free up, and wait")
    qu.add_argument("--max-cpu-runs", type=int, default=1, help="runs trained at once on the CPU")

    rp = sub.add_parser("report", help="an HTML report comparing runs")
    rp.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    rp.add_argument("--out", type=Path, default=Path("report.html"))
    rp.add_argument("--title", default="Run comparison")

    ec = sub.add_parser("export-csv", help="every metric of a run as CSV (step,epoch,name,value,time)")
    ec.add_argument("--run-dir", type=Path, required=True)
    ec.add_argument("--out", type=Path, help="CSV file (default: RUN/metrics.csv)")


def _split_field(text: str, option: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"{option} must look like FIELD=VALUES, got {text!r}")
    name, values = text.split("=", 1)
    return name.strip(), values.strip()


def sweep_points(args) -> list[dict]:
    """The points of ``sslwb sweep``'s --grid or --random/--space options."""
    from .sweep import expand_grid, parse_values, sample_random

    if args.grid and (args.random or args.space):
        raise ConfigError("sweep: use either --grid or --random N with --space, not both")
    if args.grid:
        return expand_grid(dict(_grid_axis(t) for t in args.grid))
    if args.random:
        if not args.space:
            raise ConfigError("sweep: --random N needs at least one --space FIELD=SPEC")
        space = {}
        for text in args.space:
            name, spec = _split_field(text, "--space")
            space[name] = spec if spec.startswith(("uniform:", "log-uniform:")) else parse_values(spec)
        return sample_random(space, args.random, args.seed)
    raise ConfigError("sweep: give --grid FIELD=V1,V2,... or --random N with --space FIELD=SPEC")


def _grid_axis(text: str) -> tuple[str, list]:
    from .sweep import parse_values

    name, values = _split_field(text, "--grid")
    return name, parse_values(values)


def sweep_table(run_dirs) -> str:
    """A text table: run id, the swept fields, state and the final online kNN top-1 of each run."""
    from .ledger import fold
    from .run_meta import read_meta
    from .runs import run_events, summarize_run

    points = [read_meta(d).get("sweep", {}).get("point", {}) for d in run_dirs]
    fields = list(dict.fromkeys(k for p in points for k in p))
    rows = []
    for run_dir, point in zip(run_dirs, points):
        knn = fold(run_events(run_dir), keep_series=False).latest.get("knn_top1")
        rows.append([Path(run_dir).name, *(str(point.get(f, "")) for f in fields), summarize_run(run_dir).state,
                     "-" if knn is None else f"{knn:.4f}"])
    header = ["run", *fields, "state", "final kNN"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [header, *rows])


def cmd_sweep(args) -> int:
    """``sslwb sweep``: create one run per point, enqueue them, and (unless --no-run) train them."""
    from .cli import _config_from_args
    from .run_queue import run_queue
    from .sweep import create_sweep

    try:
        points = sweep_points(args)
        base = _config_from_args(args)
        run_dirs = create_sweep(args.workspace, base, points, name=args.name, device=args.device)
    except WorkbenchError as exc:
        for line in getattr(exc, "errors", None) or [str(exc)]:
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    print(f"sweep: {len(run_dirs)} runs queued in {args.workspace / 'queue.json'}")
    for run_dir, point in zip(run_dirs, points):
        print(f"  {run_dir}  {point}")
    if args.no_run:
        return 0
    try:
        results = run_queue(args.workspace, max_cpu_runs=args.max_cpu_runs, only=run_dirs,
                            on_change=lambda d, s: print(f"{s}: {Path(d).name}", flush=True))
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(sweep_table(run_dirs))
    return 0 if all(code == 0 for code in results.values()) and len(results) == len(run_dirs) else 1


def cmd_queue(args) -> int:
    """``sslwb queue [--run]``: one line per entry (state, device, run dir); --run drains the queue."""
    from .run_queue import RunQueue, run_queue

    try:
        if args.run:
            run_queue(args.workspace, max_cpu_runs=args.max_cpu_runs,
                      on_change=lambda d, s: print(f"{s}: {Path(d).name}", flush=True))
        for e in RunQueue(args.workspace).entries():
            code = "" if e.exit_code is None else f" (exit {e.exit_code})"
            print(f"{e.state:8} {e.assigned or e.device:8} {e.run_dir}{code}")
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def cmd_report(args) -> int:
    """``sslwb report RUN_DIR... --out FILE``."""
    from .report import write_report

    try:
        out = write_report(args.run_dirs, args.out, title=args.title)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {out}")
    return 0


def cmd_export_csv(args) -> int:
    """``sslwb export-csv --run-dir D [--out FILE]``."""
    from .metrics_csv import write_metrics_csv

    if not (args.run_dir / "config.json").exists():
        print(f"error: {args.run_dir} is not a run directory (no config.json)", file=sys.stderr)
        return 2
    print(f"wrote {write_metrics_csv(args.run_dir, args.out)}")
    return 0


COMMANDS = {"sweep": cmd_sweep, "queue": cmd_queue, "report": cmd_report, "export-csv": cmd_export_csv}
