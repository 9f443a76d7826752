"""Errors raised by the backup pipeline.

Every failure a user can cause or meet (bad options, a dump tool that fails, a full disk)
is a BackupError with a message that names the problem; modules turn it into fail_json.
"""


class BackupError(Exception):
    """A failure with a message fit for the operator; ``details`` go into the task result."""

    def __init__(self, message, **details):
        super(BackupError, self).__init__(message)
        self.details = details


class ValidationError(BackupError):
    """Bad input, detected before anything runs or is written."""


class StorageError(BackupError):
    """The storage failed (unreachable, refused, full) while the source was fine; the spool may keep the backup."""
