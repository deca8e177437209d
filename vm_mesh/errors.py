"""The one exception type that reaches a user as a single line instead of a traceback, and
how to tell what lies under an exception a library wrapped."""

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class UserError(Exception):
    """A failure the user can act on: printed as `vmesh: <message>`, exit code `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether `error`, or an exception it was raised from or while handling, is a `kind`
    (httpx and anyio wrap the OSError or SSLError of a failed connect in their own)."""
    return cause_of(error, kind) is not None


def cause_of(error: BaseException, kind: type[E]) -> E | None:
    """The first of `error` and the exceptions under it that is a `kind` (see `caused_by`)."""
    seen: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in seen:
        if isinstance(cause, kind):
            return cause
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    return None
