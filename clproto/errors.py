"""User-facing errors.

Every problem caused by the user's input (a definition file, a command-line value, a data
file) is raised as :class:`ConfigError`. The CLI prints its message and exits with code 2;
no result file is written. Anything else escaping is a bug in clproto.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input, with enough context to fix it.

    ``message`` says what is wrong; the keyword-only ``where`` names the file (or ``--set``/argument),
    ``field`` the key inside it, ``value`` the offending value and ``expected`` what would have been
    accepted; ``str(error)`` joins them into the one line the CLI prints. A ``ValueError``.

    Example::

        from clproto import ConfigError

        err = ConfigError("must be positive", where="scenarios/mine.toml", field="increment", value=-2,
                          expected="1 or more")
        print(err)  # scenarios/mine.toml, field 'increment': must be positive (got -2); expected 1 or more
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
