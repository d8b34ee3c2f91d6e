"""The errors a user can fix: the CLI prints their message alone (no traceback) and exits with 2.

Anything else that escapes is a bug in htlib and keeps its traceback. The classes also derive
from the built-in type a Python caller would expect (ValueError, RuntimeError), so library code
can catch them either way.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what was asked or what is on disk; the message says what would work."""


class ConfigError(UserError, ValueError):
    """An unknown or impossible setting, found before any work starts."""


class CheckpointError(UserError, ValueError):
    """A checkpoint or weights file that is missing, unreadable, unsafe or for another model."""


class RunLockedError(UserError, RuntimeError):
    """Another process is training into the same run folder."""


class RunExistsError(UserError, FileExistsError):
    """A run folder already holds a checkpoint and resuming was not asked for."""


class StorageError(UserError, OSError):
    """A file could not be written: the disk is full, read-only or not ours (the message names the
    path and the cause; the file's previous version is kept)."""


class ResultsError(UserError, ValueError):
    """A results file (a table under results/, a run's result.json) that is damaged or not what its
    kind holds; nothing is computed or rewritten from it."""
