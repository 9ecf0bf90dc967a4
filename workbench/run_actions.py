"""Managing runs from the runs browser, without dialogs: whether a run may be deleted, moving it
into ``<workspace>/trash/`` (never ``rm -rf``), archiving it."""

from __future__ import annotations

from pathlib import Path

from backend.errors import WorkbenchError
from backend.ledger import ACTIVE
from backend.report import write_report
from backend.run_lock import lock_holder
from backend.run_meta import TRASH_DIR, archive_run, delete_run


def delete_refusal(run_dir, manager=None) -> str:
    """Why ``run_dir`` may not be deleted now ('' when it may): training in this GUI (its
    ``RunState`` is live or in an active state) or locked by a live process."""
    run_dir = Path(run_dir)
    state = manager.state(run_dir) if manager is not None else None
    if state is not None and (state.live or state.state in ACTIVE):
        return f"{run_dir.name} is training ({state.state}); stop it first"
    holder = lock_holder(run_dir)
    if holder is not None:
        return f"{run_dir.name} is in use by process {holder.pid} on {holder.host} ({holder.command})"
    return ""


def move_to_trash(workspace, run_dir, manager=None) -> Path:
    """Move ``run_dir`` into ``<workspace>/trash/`` (a numbered name when one is there already) and
    return where it went. RuntimeError when ``delete_refusal`` says no."""
    reason = delete_refusal(run_dir, manager)
    if reason:
        raise RuntimeError(f"cannot delete: {reason}")
    try:  # the engine's rule: only a run folder inside <workspace>/runs, never a locked one
        return delete_run(run_dir, workspace)
    except WorkbenchError as exc:
        raise RuntimeError(f"cannot delete: {exc}") from None


def set_archived(run_dirs, archived: bool = True) -> None:
    """Archive (hide from the runs list) or unarchive runs."""
    for run_dir in run_dirs:
        archive_run(run_dir, archived)


def report_task(ctx, run_dirs, out_path) -> Path:
    """Worker: ``backend.report.write_report`` of ``run_dirs`` to ``out_path``; returns the path."""
    ctx.check()
    return write_report(run_dirs, out_path)
