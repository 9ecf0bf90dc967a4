"""Error types that map to the trainer's exit codes (see docs/ARCHITECTURE.md, "The trainer process")."""


class WorkbenchError(Exception):
    """Base class: a failure the user can act on, described in one sentence."""

    exit_code = 1


class ConfigError(WorkbenchError):
    """One or more config fields are invalid; ``errors`` lists every problem with its field path."""

    exit_code = 2

    def __init__(self, errors):
        if isinstance(errors, str):
            errors = [errors]
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


class DataError(WorkbenchError):
    """A data source is missing, empty or unreadable; the message names the path or source."""

    exit_code = 3


class CheckpointError(WorkbenchError):
    """A checkpoint or exported file cannot be used; the message names the file and why."""

    exit_code = 1


class Cancelled(Exception):
    """A long call stopped early because its caller asked it to (its ``cancelled()`` callable
    returned True, or a GUI task was cancelled). Not a failure: nothing to report to the user.

    The one cancellation exception of the project: backend tools (inspection, export, probes,
    fine-tuning, folder scans and decoding) and the GUI's task runner all raise this class."""


class WriteError(WorkbenchError):
    """A file could not be written (disk full, quota, read-only): one sentence naming it, exit 1.
    Whatever was written before is intact (see docs/faults.md, rows 21+)."""

    exit_code = 1


def write_error(what, exc: OSError, consequence: str) -> WriteError:
    """"could not write WHAT: No space left on device; CONSEQUENCE" as a :class:`WriteError`."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return WriteError(f"could not write {what}: {reason}; {consequence}")
