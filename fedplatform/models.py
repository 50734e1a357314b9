from django.db import models


class OutboxEvent(models.Model):
    """A domain event on its way to the server processes, when no Redis carries them.

    Written in the transaction that made the change (a rollback takes it back), read by each
    server process's relay (fedplatform.events) and pruned by the engine's sweep.
    """

    kind = models.CharField(max_length=40)
    payload = models.JSONField()
    wakes = models.BooleanField(default=False, help_text="also sent to the parked devices' group (WAKE_GROUP)")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class AuditEntry(models.Model):
    """One operator action on a run or a client: who, what, when, on what, with which values.

    Written by the service that made the change, in its transaction, so the API, the admin and
    the dashboard (which calls the API) all leave the same trail, and a refused or rolled-back
    action leaves none. Read-only in the admin.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150, help_text="the operator's user name")
    action = models.CharField(max_length=40, help_text="e.g. run.start, client.kick")
    target_type = models.CharField(max_length=20, help_text="run or client")
    target_id = models.BigIntegerField()
    run_id = models.BigIntegerField(null=True, blank=True, help_text="the run it concerns")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"
        # The operator roles (fedplatform.roles) are these two permissions, held through groups.
        permissions = [
            ("view_platform", "Can see runs, rounds, clients and the dashboard"),
            ("operate_platform", "Can create, control and configure runs and control clients"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target_type} {self.target_id}"
