"""Errors that describe a user mistake or a missing resource.

A `UserError` is caught by the `bench` CLI and printed as one clear message (no traceback),
with a non-zero exit. Its text must name the problem and the fix.
"""


class UserError(Exception):
    """Base of every error that a user can fix (bad input, missing files, no network)."""


class DataError(UserError):
    """A dataset cannot be loaded: missing or incomplete files, corrupt data, no network."""


class WeightsError(UserError):
    """Pre-trained weights cannot be found or do not match the architecture."""


class ConfigError(UserError):
    """An unknown name (dataset, method, backbone) or an invalid hyperparameter."""
