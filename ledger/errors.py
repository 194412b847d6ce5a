"""One exception tree for the ledger. Each error carries the data a caller needs;
`api/errors.py` turns them into responses in one place."""

from typing import Any


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    code = "ledger_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(LedgerError):
    code = "not_found"


class InvalidTransition(LedgerError):
    """A guarded UPDATE matched no row: the task is not in a status the action leaves from."""

    code = "invalid_transition"

    def __init__(self, action: str, current_status: str, allowed: list[str]) -> None:
        super().__init__(
            f"cannot {action} a task that is {current_status}",
            action=action,
            current_status=current_status,
            allowed_from=allowed,
        )
        self.current_status = current_status


class BadRequest(LedgerError):
    """Well-formed JSON that names something the configuration does not have."""

    code = "invalid_request"


class Conflict(LedgerError):
    code = "conflict"


class PolicyError(LedgerError):
    """The request is well formed but the policy forbids what it asks (e.g. break glass)."""

    code = "policy_forbidden"


class ConfigError(LedgerError):
    code = "config_error"
