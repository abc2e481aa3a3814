"""interp's error types: what a user's mistake raises, as opposed to a bug.

Every class derives from :class:`InterpError` and from the built-in type callers already catch
(scikit-learn's ``NotFittedError(ValueError, AttributeError)`` pattern), so
``except ValueError`` keeps working while the command line can tell a user's mistake, printed as
one line, from a bug, which keeps its traceback.
"""

from __future__ import annotations


class InterpError(Exception):
    """Base class: the input, a file or the environment is wrong, not interp."""

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; a message should read as written.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class InvalidArgumentError(InterpError, ValueError):
    """An argument has the right type but a value outside what is accepted."""


class InputTypeError(InterpError, TypeError):
    """An argument has a type the function does not accept."""


class UnknownNameError(InterpError, KeyError):
    """A name (model, task, metric, statistic, cache key...) that does not exist."""


class UnknownHookError(UnknownNameError):
    """A hook name or pattern the model does not offer."""


class UnsupportedModelError(InterpError, ValueError):
    """A model family, architecture or backend interp cannot wrap."""


class ContextLengthError(InvalidArgumentError):
    """An input longer than the model's context."""


class DamagedFileError(InterpError, ValueError):
    """A file exists but cannot be read: truncated, empty, or not the format it claims."""


class MissingInputError(InterpError, FileNotFoundError):
    """An input the user named (a file, folder, run or hub id) cannot be found or fetched."""


class OutputExistsError(InterpError, FileExistsError):
    """An output path exists and may not be replaced."""


class OutputLocationError(InterpError, OSError):
    """An output location cannot be written (missing parent, read-only, not a folder...)."""


class MissingDependencyError(InterpError, ModuleNotFoundError):
    """An optional package (or the embedded model's wheel) is not installed."""


class DeviceError(InterpError, ValueError):
    """A device or dtype the machine cannot provide (a device map naming a missing GPU...)."""


class NonFiniteError(InterpError, FloatingPointError):
    """NaN or inf where finite numbers are required (activations, inputs, weights)."""


class TrainingDivergedError(InterpError, FloatingPointError):
    """Training produced a non-finite or exploding loss."""
