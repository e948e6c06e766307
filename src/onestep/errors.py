"""The one error type every user-facing failure derives from: `onestep <cmd>` catches it, prints one
line (`onestep <cmd>: error: <message>`) and exits 2, without a traceback."""


class OnestepError(RuntimeError):
    """A failure with one clear message for the user: the key or file, the bad value, what is allowed."""
