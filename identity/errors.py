"""The refusal every identity-service decision raises: a stable reason, a detail, a status."""


class Rejection(Exception):
    """A request the identity service refuses; nothing is issued.

    `reason` is stable and machine-readable (`token.already_used`), `detail` says
    what was wrong for the person reading the log, `status` is the HTTP status.
    """

    def __init__(self, reason: str, detail: str, status: int = 400) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = status
