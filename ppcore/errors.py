"""One exception type for every input a user can get wrong.

The command line and the app catch ``PPCoreError`` and show its message as one line; anything
else is a bug and is allowed to surface as a traceback in the logs.
"""


class PPCoreError(ValueError):
    """A bad input or a missing resource, with a message meant for the user."""


class CheckpointError(PPCoreError):
    """A checkpoint that cannot be loaded: corrupt, not ours, or not what was asked for."""
