"""The operators' audit trail: ``audit_record`` is called by each service that carries out an
operator's action, inside that action's transaction. An action without an operator (a management command, the
demo) is recorded as ``(system)``."""
from typing import Any

from .models import AuditEntry


def audit_record(
    *, actor: str, action: str, target_type: str, target_id: int, run_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    return AuditEntry.objects.create(
        actor=actor or "(system)", action=action, target_type=target_type, target_id=target_id,
        run_id=run_id, details=details or {},
    )
