from django.db import models


class OutboxEvent(models.Model):
    """A domain event on its way to the server processes, when no Redis carries them.

    Written in the transaction that made the change (a rollback takes it back), read by each
    server process's relay (fedplatform.events) and pruned by the engine's sweep.
    """

    kind = models.CharField(max_length=40)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"
