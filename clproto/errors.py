"""User-facing errors.

Every problem caused by the user's input (a definition file, a command-line value, a data
file) is raised as :class:`ConfigError`. The CLI prints its message and exits with code 2;
no result file is written. Anything else escaping is a bug in clproto.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input, with enough context to fix it.

    ``where`` names the file (or ``--set``/argument) and ``field`` the key inside it;
    ``expected`` says what would have been accepted.
    """

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        field: str | None = None,
        value: object = None,
        expected: str | None = None,
    ) -> None:
        self.where = where
        self.field = field
        self.value = value
        self.expected = expected
        self.message = message
        parts = []
        if where:
            parts.append(str(where))
        if field:
            parts.append(f"field '{field}'")
        head = ": ".join([", ".join(parts)] if parts else [])
        text = f"{head}: {message}" if head else message
        if value is not None:
            text += f" (got {value!r})"
        if expected:
            text += f"; expected {expected}"
        super().__init__(text)

    def located(self, where: str) -> "ConfigError":
        """The same error (same class) naming ``where`` — for errors raised below the layer that knows the file."""
        if self.where:
            return self
        err = type(self)(self.message, where=where, field=self.field, value=self.value, expected=self.expected)
        return err
