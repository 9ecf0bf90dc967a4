"""TrainerControl: user wording of stop reasons, detach, checkpoint while paused, paused time."""

import io
import threading

from backend.control import STOP_FROM_WORKBENCH, WORKBENCH_CLOSED, TrainerControl


def _drain(control: TrainerControl) -> None:
    for thread in threading.enumerate():
        if thread.name == "stdin-control":
            thread.join(5)


def test_stop_reasons_use_user_wording():
    control = TrainerControl(stream=io.StringIO("stop\n"), exit_on_eof=True)
    _drain(control)
    assert control.stop_requested.is_set() and control.stop_reason == STOP_FROM_WORKBENCH
    closed = TrainerControl(stream=io.StringIO(""), exit_on_eof=True)
    _drain(closed)
    assert closed.stop_reason == WORKBENCH_CLOSED == "the workbench closed"
    assert "stdin" not in STOP_FROM_WORKBENCH + WORKBENCH_CLOSED


def test_detach_makes_end_of_stdin_harmless():
    control = TrainerControl(stream=io.StringIO("detach\n"), exit_on_eof=True)
    _drain(control)
    assert control.detached and not control.stop_requested.is_set()


def test_checkpoint_while_paused_runs_the_callback_and_counts_paused_time():
    control = TrainerControl(read_stdin=False)
    control.request("pause")
    written = []

    def on_checkpoint():
        written.append(control.checkpoint_requested.is_set())
        control.request("resume")

    control.request("checkpoint")
    control.wait_while_paused(on_checkpoint=on_checkpoint)
    assert written == [False]  # cleared before the callback: the loop does not write it twice
    assert not control.paused.is_set()


def test_checkpoint_while_paused_without_callback_waits_for_the_loop():
    control = TrainerControl(read_stdin=False)
    control.request("pause")
    control.request("checkpoint")
    threading.Timer(0.3, lambda: control.request("resume")).start()
    control.wait_while_paused()
    assert control.checkpoint_requested.is_set()  # still pending for the loop
    assert control.paused_seconds != 0.0  # the pause was counted


def test_a_checkpoint_asked_for_during_the_ranks_agreement_is_kept_for_the_next_poll(monkeypatch):
    """Under torchrun rank 0 spends most of a pause inside the all-reduce that agrees on the
    requests; a checkpoint command read by the stdin thread meanwhile must survive that call."""
    import torch

    from backend import distributed as D
    from backend.training import loop

    control = TrainerControl(read_stdin=False)
    control.request("pause")

    def all_reduce_while_the_command_arrives(flags: torch.Tensor) -> torch.Tensor:
        control.request("checkpoint")   # the stdin thread, while this rank waits for the others
        return flags.clone()

    monkeypatch.setattr(D, "is_enabled", lambda: True)
    monkeypatch.setattr(D, "all_reduce_sum", all_reduce_while_the_command_arrives)
    monkeypatch.setattr(loop, "sync_device", lambda: torch.device("cpu"))
    assert loop.agree_on_requests(control) == (False, False, True)   # not seen in this round
    monkeypatch.setattr(D, "all_reduce_sum", lambda flags: flags.clone())
    assert loop.agree_on_requests(control) == (False, True, True)    # taken in the next one
    assert loop.agree_on_requests(control) == (False, False, True)   # and only once
