"""The GPU suite's report as markdown (``report.md``, and what the suite prints at the end)."""

from __future__ import annotations


def _table(header: list[str], rows: list[list]) -> list[str]:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return "-" if v is None else str(v)
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)]


def _versions(v: dict) -> list[str]:
    keys = ("gpu", "capability", "gpu_memory_gib", "driver", "cuda", "cudnn", "torch", "torchvision", "python",
            "numpy", "cpu_count", "commit")
    return _table(["what", "value"], [[k, v.get(k)] for k in keys if k in v]) + [""]


def _throughput(t: dict) -> list[str]:
    rows = [[r.get("what"), r.get("backbone", ""), r.get("batch"), r.get("img_s"), r.get("step_ms"),
             r.get("peak_gib"), r.get("first_step_s"), r.get("status", "ok") + (f": {r['note']}" if r.get("note") else "")
             + (f": {r['error']}" if r.get("error") else "")] for r in t.get("rows", [])]
    summary = [[s["batch"], s["eager"], s["compiled"], s["torchvision"], s["lightly"], s["x_torchvision"], s["x_lightly"]]
               for s in t.get("summary", [])]
    return _table(["what", "backbone", "batch", "img/s", "ms/step", "peak GiB", "first step s", "status"], rows) + [
        f"(data {t.get('source')}, timed steps {t.get('timed_steps')}, DataLoader workers {t.get('workers')}; img/s "
        f"counts each image once with both views)", ""] + _table(
        ["batch", "real step", "compiled", "torchvision DataLoader", "lightly", "best / torchvision", "best / lightly"],
        summary) + [""]


def _run(r: dict) -> list[str]:
    lines = [f"{r.get('backbone')} batch {r.get('batch')}" + (f", compile {r['compile']}" if "compile" in r else "")
             + f", {r.get('steps_per_epoch')} steps/epoch; ended: {r.get('end')} ({r.get('end_message')})", ""]
    lines += _table(["epoch", "epoch s", "kNN top-1", "kNN s", "loss"],
                    [[e.get("epoch"), e.get("epoch_s"), e.get("knn_top1"), e.get("knn_s"), e.get("loss")]
                     for e in r.get("epochs", [])]) + [""]
    ex = r.get("extrapolation") or {}
    if ex:
        lines += [f"200 epochs extrapolated: {ex['train_200_epochs_s']:.0f}s training + {ex['knn_200_epochs_s']:.0f}s kNN "
                  f"= {ex['total_200_epochs_s']:.0f}s on this data ({ex['images_per_epoch']} images/epoch, "
                  f"{ex['epoch_img_s']} img/s steady)"
                  + (f"; {ex['train_200_epochs_full_cifar10_s']:.0f}s training on the full 50k CIFAR-10 train set"
                     if "train_200_epochs_full_cifar10_s" in ex else ""), ""]
    if r.get("export"):
        e = r["export"]
        lines += [f"export: {e['folder']} ({e['bytes'] / 2**20:.1f} MiB float16, max |diff| vs float32 "
                  f"{e['max_abs_diff_vs_float32']:.2e})", ""]
    return lines


def markdown(report: dict) -> str:
    """The whole report: stage statuses, versions, kernels, throughput, the two runs."""
    stages = report.get("stages", {})
    lines = ["# GPU suite report", "", f"dry run: {report.get('dry_run')}; budget {report.get('budget_s')}s; "
             f"elapsed {report.get('elapsed_s')}s; GUI modules loaded: {report.get('gui_modules_loaded') or 'none'}"
             + (f"; {report['note']}" if report.get("note") else ""), ""]
    lines += _table(["stage", "status", "seconds", "share s", "note / error"],
                    [[n, s.get("status"), s.get("seconds"), s.get("share_s"), s.get("error") or s.get("note") or ""]
                     for n, s in stages.items()]) + [""]
    sections = {"versions": _versions, "throughput": _throughput, "simclr": _run, "dino": _run}
    for name, stage in stages.items():
        if name == "cuda_tests" and "tests" in stage:
            lines += ["## cuda_tests", "", f"{stage['passed']} passed, {stage['failed']} failed, {stage['errors']} errors, "
                      f"{stage['skipped']} skipped of {stage['tests']}" +
                      (f"; failing: {', '.join(stage['failures'])}" if stage["failures"] else ""), ""]
        elif name == "kernels" and "per_step" in stage:
            lines += ["## kernels", "", f"{stage['per_step']} {stage['unit']} per step ({stage['backbone']}, batch "
                      f"{stage['batch']}): {stage['augmentation']} in the augmentation, {stage['rest']} in the rest; "
                      f"{stage['note']}", ""]
        elif name in sections and stage.get("status") != "skipped" and len(stage) > 3:
            lines += [f"## {name}", ""] + sections[name](stage)
    return "\n".join(lines) + "\n"
