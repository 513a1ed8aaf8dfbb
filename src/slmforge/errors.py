"""Every user-error class, and the one way a command ends on one.

A user error is input that cannot work (a config key, a data file, a model that cannot be loaded, a record
that cannot be read). Its message names the file/field/override and the fix. Commands end on it with one
``error: ...`` line on stderr, exit code 2, W&B closed, files already written kept. Anything else is a bug and keeps its traceback.

The classes live here, below every layer, so that data, tasks, models, records, routing and the commands
raise and catch the same types without importing each other. The exit path itself is
:func:`slmforge.cli.common.command`.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class SlmforgeError(Exception):
    """Base of every user error: the message is complete (what is wrong, where, how to fix it)."""


class ConfigError(SlmforgeError, ValueError):
    """A configuration that cannot work; the message names the key and how to fix it."""


class CheckpointError(SlmforgeError, ValueError):
    """A checkpoint that is missing or unreadable."""


class DataError(SlmforgeError, ValueError):
    """Data that cannot be loaded or does not fit the task; the message names the file/field and the fix."""


class TaskError(SlmforgeError, ValueError):
    """Task configuration that does not fit the data; the message says what to change."""


class ModelLoadError(SlmforgeError, RuntimeError):
    """A model that cannot be loaded; the message says which and how to fix it."""


class ModelUnavailableError(ModelLoadError):
    """A model this machine cannot reach (a hub model offline, an optional model package not installed), as
    opposed to one configured wrongly: a sweep records its job as skipped (``skipped.json``), not failed."""


class RecordError(SlmforgeError, ValueError):
    """A results record or predictions file that cannot be read; the message names the file and field."""


class PricingError(SlmforgeError, ValueError):
    """A pricing table that cannot price a predictor; the message names the model/machine and the fix."""


class RoutingError(SlmforgeError, ValueError):
    """Two predictors that cannot be routed (different rows, no confidences, ...)."""


class DivergenceError(SlmforgeError, RuntimeError):
    """Training or a model produced non-finite numbers (loss, weights, probabilities)."""


class APIConfigError(SlmforgeError, ValueError):
    """An API baseline that cannot be called (no key, no base_url, unknown option)."""


def user_error_message(e: BaseException) -> str:
    """The one line printed for a user error (``KeyError`` quotes its argument; unquote it)."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    return str(msg)
