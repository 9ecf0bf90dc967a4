"""The engine's command line: train | eval | inspect | export | sweep | queue | report | export-csv
(``python -m backend ...``).

The ``sslwb`` console script (package ``sslwb``, above the engine and the GUI) adds ``gui`` and
hands every other command to :func:`main` here; this module never imports the GUI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ConfigError, WorkbenchError


def registry_epilog() -> str:
    """The methods (by family) and data sources the registries know, for ``sslwb train --help``."""
    from .data.registry import SOURCES
    from .methods.catalog import method_specs
    from .methods.spec import FAMILIES

    by_family = {family: [n for n, s in method_specs().items() if s.family == family] for family in FAMILIES}
    lines = ["method.name (by family):"] + [f"  {family}: {', '.join(names)}"
                                             for family, names in by_family.items() if names]
    lines += ["data.source:"] + [f"  {s.syntax}: {s.help}" for s in SOURCES]
    return "\n".join(lines)


def _build_parser(front_commands=()) -> argparse.ArgumentParser:
    """The parser; ``front_commands`` are (name, help) of commands the caller dispatches itself
    (``sslwb gui``), listed in the help only."""
    parser = argparse.ArgumentParser(prog="sslwb", description="SSL Workbench: self-supervised learning experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in front_commands:
        sub.add_parser(name, help=help_text).add_argument("rest", nargs=argparse.REMAINDER)

    train = sub.add_parser("train", help="train a run (new from --config/--preset, or an existing run dir)",
                           epilog=registry_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_args(train)
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

    _add_inspect_parser(sub)
    _add_export_parser(sub)
    from .cli_runs import add_parsers
    add_parsers(sub)
    from .cli_launch import add_launch_parser
    add_launch_parser(sub, _add_run_args)
    return parser


def _add_run_args(parser) -> None:
    """The options naming a run and its config (train, launch)."""
    parser.add_argument("--config", type=Path, help="TOML or JSON experiment config")
    parser.add_argument("--preset", help="a preset from resources/presets (e.g. quick, simclr, moco)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field, e.g. --set optim.lr=0.1 (repeatable)")
    parser.add_argument("--run-dir", type=Path, help="run directory (created when given with --config/--preset)")
    parser.add_argument("--workspace", type=Path, default=Path("workspace"),
                        help="where a new run directory is made when --run-dir is not given")


def _add_inspect_parser(sub) -> None:
    ins = sub.add_parser("inspect", help="embeddings, attention maps or a linear probe of a checkpoint")
    ins.add_argument("--run-dir", type=Path, required=True)
    ins.add_argument("--checkpoint", type=Path, help="checkpoint file (default: RUN/checkpoints/last.pt)")
    ins.add_argument("--device", default="cpu")
    what = ins.add_subparsers(dest="what", required=True)
    emb = what.add_parser("embeddings", help="compute (or read the cached) embeddings and a 2-D projection")
    emb.add_argument("--split", choices=("train", "test"), default="test")
    emb.add_argument("--limit", type=int, default=0, help="at most this many images (0 = all)")
    emb.add_argument("--features", choices=("backbone", "projector"), default="backbone")
    emb.add_argument("--projection", choices=("pca", "umap", "tsne", "none"), default="pca")
    emb.add_argument("--seed", type=int, default=0, help="seed of the projection")
    emb.add_argument("--reproducible", action="store_true",
                     help="UMAP: the exactly reproducible (seeded, single-threaded, slower) layout "
                          "instead of the fast parallel one")
    emb.add_argument("--out", type=Path, help="save a scatter PNG (needs matplotlib)")
    att = what.add_parser("attention", help="attention maps (ViT) or feature-norm maps (CNN) of an image")
    att.add_argument("--image", type=Path, help="image file (default: the first test image)")
    att.add_argument("--mass", type=float, default=0.6, help="attention mass kept by the thresholded mask")
    att.add_argument("--upsample", choices=("nearest", "bilinear"), default="nearest")
    att.add_argument("--out", type=Path, help="save the maps as a PNG (needs matplotlib)")
    lp = what.add_parser("linear-probe", help="linear probe (logistic regression) on frozen features")
    lp.add_argument("--features", choices=("backbone", "projector"), default="backbone")
    lp.add_argument("--epochs", type=int, default=100, help="L-BFGS iterations")
    lp.add_argument("--lr", type=float, default=1.0)
    lp.add_argument("--weight-decay", type=float, default=5e-4)
    _add_label_fraction_args(lp)
    _add_classifier_result_args(lp)
    ft = what.add_parser("fine-tune", help="fine-tune the backbone with a linear classifier (labels needed)")
    ft.add_argument("--epochs", type=int, default=10)
    ft.add_argument("--lr", type=float, default=0.05, help="classifier learning rate per 256 images")
    ft.add_argument("--backbone-lr-scale", type=float, default=0.1, help="backbone lr = this x classifier lr")
    ft.add_argument("--batch-size", type=int, default=128)
    ft.add_argument("--weight-decay", type=float, default=5e-4)
    _add_label_fraction_args(ft)
    _add_classifier_result_args(ft)


def _add_label_fraction_args(parser) -> None:
    """The semi-supervised options (linear probe, fine-tuning): label fraction and its seed."""
    parser.add_argument("--label-fraction", type=float, default=1.0,
                        help="train on a class-balanced subset of this fraction of the labels (e.g. 0.01, 0.1)")
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of the label subset")


def _add_classifier_result_args(parser) -> None:
    """Options shared by the classifier evaluations (linear probe, fine-tuning)."""
    parser.add_argument("--train-limit", type=int, default=0, help="at most this many training images (0 = all)")
    parser.add_argument("--no-record", action="store_true", help="do not append the result to evaluations.jsonl")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


EXPORT_FORMATS = ("safetensors", "pt2", "torchscript", "onnx", "torchvision")  # backend.export.FORMATS (not imported: startup)


def _add_export_parser(sub) -> None:
    ex = sub.add_parser("export", help="export the encoder (safetensors, TorchScript, ONNX) with a model card")
    ex.add_argument("--run-dir", type=Path, required=True)
    ex.add_argument("--checkpoint", type=Path, help="checkpoint file (default: RUN/checkpoints/last.pt)")
    ex.add_argument("--out", type=Path, help="output folder (default: RUN/export/<name>)")
    ex.add_argument("--name", help="name of the folder under RUN/export")
    ex.add_argument("--formats", nargs="+", choices=EXPORT_FORMATS, default=list(EXPORT_FORMATS),
                    help="files to write (ONNX only when the onnx package is installed)")
    ex.add_argument("--include-projector", action="store_true", help="export backbone + projection head")


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
    from . import distributed as D
    from .control import TrainerControl
    from .cli_create import args_config, new_run_setup
    from .run_start import device_hint, join_group, open_run
    from .train import run_training

    rank0 = int(__import__("os").environ.get("RANK", "0")) == 0
    cfg, code = args_config(args, rank0)
    if code is not None:
        return code
    if args.nproc > 1:
        if D.launched_by_torchrun():
            return _report_error(ConfigError("--nproc starts torchrun itself: drop it under torchrun"), None)
        opened = open_run(D.DistInfo(), new_run_setup(args, cfg), lambda exc: _report_error(exc, args.run_dir))
        if isinstance(opened, int):
            return opened
        opened.release()  # the torchrun ranks take it over (rank 0 holds it while training)
        return _relaunch_with_torchrun(args, opened.run_dir)
    dist_info = join_group(device_hint(args.run_dir, cfg))
    opened = open_run(dist_info, new_run_setup(args, cfg), lambda exc: _report_error(exc, args.run_dir))
    if isinstance(opened, int):
        D.cleanup()
        return opened
    # Under torchrun every rank inherits the same stdin: only rank 0 reads the commands (a line
    # read by another rank would be lost to rank 0); the loop makes every rank act on them.
    control = TrainerControl(read_stdin=not args.no_stdin and rank0,
                             exit_on_eof=args.exit_on_stdin_eof)
    control.install_signal_handlers()
    return run_training(opened.run_dir, resume=args.resume, control=control, tty=sys.stdout.isatty(),
                        opened=opened)


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


def main(argv=None, *, front_commands=()) -> int:
    """Run one engine command; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(front_commands)
    args = parser.parse_args(argv)
    handlers = {"train": cmd_train, "eval": cmd_eval}
    extra = _extra_commands()
    handler = handlers.get(args.command) or extra.get(args.command)
    return handler(args)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _inspect_embeddings(args) -> None:
    import time

    from .inspect import cluster_labels, compute_embeddings, embedding_projection

    start = time.perf_counter()
    es = compute_embeddings(args.run_dir, checkpoint=args.checkpoint, split=args.split, limit=args.limit,
                            features=args.features, device=args.device)
    took = time.perf_counter() - start
    how = "read from the cache" if es.from_cache else "computed"
    print(f"embeddings: {len(es)} x {es.dim} ({args.features} features, {es.split} split, {es.checkpoint}) "
          f"{how} in {took:.2f}s; cache {es.path}")
    if args.projection == "none":
        return
    start = time.perf_counter()
    xy = embedding_projection(es, args.projection, args.seed, reproducible=args.reproducible)
    kind = " reproducible" if args.reproducible and args.projection == "umap" else ""
    print(f"projection: {args.projection}{kind} (seed {args.seed}) in {time.perf_counter() - start:.2f}s; "
          f"x in [{xy[:, 0].min():.3g}, {xy[:, 0].max():.3g}], y in [{xy[:, 1].min():.3g}, {xy[:, 1].max():.3g}]")
    if args.out:
        from .inspect.render import matplotlib_missing, save_scatter
        if matplotlib_missing():
            _warn(f"{args.out} not written: {matplotlib_missing()}")
            return
        colours, names = es.labels, es.class_names
        if colours is None:
            colours, names = cluster_labels(es.features, k=10, seed=args.seed), [f"cluster {i}" for i in range(10)]
        save_scatter(args.out, xy, colours, names, f"{args.projection.upper()} of {len(es)} {es.split} embeddings")
        print(f"wrote {args.out}")


def _inspect_attention(args) -> None:
    from .inspect import attention_maps, attention_threshold_mask, load_image_file, split_images
    from .inspect.common import run_config

    cfg = run_config(args.run_dir, args.checkpoint)
    if args.image is not None:
        image, label = load_image_file(args.image, cfg.data.image_size), str(args.image)
    else:
        images, _, _ = split_images(args.run_dir, [0], split="test", checkpoint=args.checkpoint)
        image, label = images[0], "test image 0"
    result = attention_maps(args.run_dir, image, args.checkpoint, device=args.device, upsample=args.upsample)
    mask = attention_threshold_mask(result.grid[0], args.mass)
    kept = mask.flatten(1).float().mean(dim=1).tolist()
    print(f"{result.kind} maps of {label}: {result.num_heads} head(s) on a "
          f"{result.grid.shape[-2]}x{result.grid.shape[-1]} grid ({result.note})")
    for h, frac in enumerate(kept):
        peak = result.grid[0, h].flatten().max().item()
        print(f"  head {h}: {args.mass:.0%} of the mass in {frac:.0%} of the cells; peak cell {peak:.3f}")
    if args.out:
        from .inspect.render import matplotlib_missing, save_attention
        if matplotlib_missing():
            _warn(f"{args.out} not written: {matplotlib_missing()}")
            return
        save_attention(args.out, result.images[0].numpy(), result.per_head[0].numpy(), result.note)
        print(f"wrote {args.out}")


def _print_classification(args, what: str, r: dict, details: str) -> None:
    """A classifier evaluation as JSON (--json) or one line: top-1, top-k and ``details``."""
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{what} top-1 {r['top1']:.4f}  top-{r['top5_k']} {r['top5']:.4f}  ({r['checkpoint']}; {details})")


def _inspect_linear_probe(args) -> None:
    from .linear_probe import linear_probe

    r = linear_probe(args.run_dir, checkpoint=args.checkpoint, features=args.features, epochs=args.epochs,
                     lr=args.lr, weight_decay=args.weight_decay, train_limit=args.train_limit,
                     device=args.device, record=not args.no_record, label_fraction=args.label_fraction,
                     subset_seed=args.subset_seed)
    labels = f" ({r['label_fraction']:g} of the labels, seed {r['subset_seed']})" if r["label_fraction"] < 1 else ""
    _print_classification(args, "linear probe", r, f"{r['features']} features, {r['bank_size']} train{labels} / "
                          f"{r['queries']} test images, L-BFGS {r['epochs']} iterations, weight decay "
                          f"{r['weight_decay']:g}, {r['seconds']:.1f}s")


def _inspect_fine_tune(args) -> None:
    from .finetune import fine_tune

    r = fine_tune(args.run_dir, checkpoint=args.checkpoint, epochs=args.epochs, lr=args.lr,
                  backbone_lr_scale=args.backbone_lr_scale, batch_size=args.batch_size,
                  weight_decay=args.weight_decay, train_limit=args.train_limit, device=args.device,
                  record=not args.no_record, label_fraction=args.label_fraction, subset_seed=args.subset_seed)
    labels = f" ({r['label_fraction']:g} of the labels, seed {r['subset_seed']})" if r["label_fraction"] < 1 else ""
    _print_classification(args, "fine-tune", r, f"{r['bank_size']} train{labels} / {r['queries']} test images, "
                          f"{r['epochs']} epochs, lr {r['lr']:g} (backbone x{r['backbone_lr_scale']:g}), "
                          f"{r['seconds']:.1f}s")


def cmd_inspect(args) -> int:
    handlers = {"embeddings": _inspect_embeddings, "attention": _inspect_attention,
                "linear-probe": _inspect_linear_probe, "fine-tune": _inspect_fine_tune}
    try:
        handlers[args.what](args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def cmd_export(args) -> int:
    from .export import export_encoder

    try:
        paths = export_encoder(args.run_dir, args.out, checkpoint=args.checkpoint, name=args.name,
                               formats=tuple(args.formats), include_projector=args.include_projector,
                               on_warning=_warn)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"exported to {paths[0].parent}:")
    for p in paths:
        print(f"  {p.name}")
    return 0


def _extra_commands() -> dict:
    """The ``inspect``, ``export``, ``launch``, ``sweep``, ``queue``, ``report`` and ``export-csv``
    subcommand handlers."""
    from .cli_launch import cmd_launch
    from .cli_runs import COMMANDS
    return {"inspect": cmd_inspect, "export": cmd_export, "launch": cmd_launch, **COMMANDS}


def entry() -> None:
    """Console-script wrapper: exit with main()'s code."""
    sys.exit(main())
