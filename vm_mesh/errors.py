"""The one exception type that reaches a user as a single line instead of a traceback."""


class UserError(Exception):
    """A failure the user can act on: printed as `vmesh: <message>`, exit code `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
