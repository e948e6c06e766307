"""The one base of every error a user can fix (a config key, a missing file, an unreachable server).

`onestep <command>` catches `OnestepError` alone and exits 2 with `onestep <command>: error: <message>`;
anything else is a bug and keeps its traceback. Each subclass also derives from the builtin it
replaced (ValueError, RuntimeError), so existing `except ValueError` callers keep working.
"""


class OnestepError(Exception):
    """A user-facing error: its message names the config key or the file."""


class ConfigError(OnestepError, ValueError):
    """One clear message: the key, the bad value, what is allowed."""
