"""Descriptions of the run fields the page's forms edit, taken from the model so they cannot drift.

The forms are plain HTML whose submit goes to the REST API as JSON; the API's serializer remains
the one validator, these only pick the right input widget.
"""
import json
from dataclasses import dataclass

from django.db import models

from fedcore import codec
from fedcore.strategies import STRATEGIES, validate_strategy
from rounds.downloads import DOWNLOAD_ENCODINGS
from rounds import runtask
from rounds.models import TUNABLE_FIELDS, Run

# What the "new run" form asks; everything else keeps the model's default.
CREATE_FIELDS = (
    "name", "task", "task_config", "strategy", "strategy_config", "rounds", "min_clients", "clients_per_round",
    "min_updates", "local_epochs", "batch_size", "learning_rate", "round_timeout", "upload_encoding",
    "download_encoding",
)
# Uploads may use any encoding; downloads the dense ones the broadcast replica takes (rounds.downloads).
ENCODING_CHOICES = {"upload_encoding": codec.ENCODINGS, "download_encoding": DOWNLOAD_ENCODINGS}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    kind: str  # text | int | float | bool | choice | json
    help: str
    default: object
    choices: tuple[tuple[str, str], ...] = ()


def _column(name: str) -> models.Field:
    field = Run._meta.get_field(name)
    if not isinstance(field, models.Field):  # a reverse relation: nothing a form could ask
        raise LookupError(f"Run has no column {name!r}")
    return field


def spec(name: str) -> FieldSpec:
    field = _column(name)
    label = str(field.verbose_name).replace("_", " ")
    default = field.get_default()
    if name == "task":
        offered = [runtask.describe(path) for path in runtask.offered_tasks()]
        choices = tuple((t["path"], f"{t['title'] or t['path']} ({t['path']})") for t in offered if t["available"])
        return FieldSpec(name, label, "choice", str(field.help_text), default, choices)
    if name == "task_config":
        # Prefilled with the default task's settings; the page swaps them when the task changes.
        defaults = runtask.describe(Run._meta.get_field("task").get_default())["config_defaults"]
        return FieldSpec(name, label, "json", "JSON: the task's settings", json.dumps(defaults))
    if name == "strategy_config":
        # The default strategy's parameters; the page swaps them when the strategy changes.
        defaults = validate_strategy(Run._meta.get_field("strategy").get_default())
        return FieldSpec(name, label, "json", "JSON: the strategy's parameters (clip_norm works with any)",
                         json.dumps(defaults))
    if name in ENCODING_CHOICES:
        choices = tuple((e, e) for e in ENCODING_CHOICES[name])
        return FieldSpec(name, label, "choice", str(field.help_text), default, choices)
    if field.choices:
        return FieldSpec(name, label, "choice", str(field.help_text), default,
                         tuple((str(v), str(t)) for v, t in field.choices))
    if isinstance(field, models.BooleanField):
        kind = "bool"
    elif isinstance(field, models.FloatField):
        kind = "float"
    elif isinstance(field, models.IntegerField):
        kind = "int"
    else:
        kind = "text"
    return FieldSpec(name, label, kind, str(field.help_text), default)


def tunable_specs() -> list[FieldSpec]:
    return [spec(name) for name in TUNABLE_FIELDS]


def create_specs() -> list[FieldSpec]:
    return [spec(name) for name in CREATE_FIELDS]


def strategy_defaults() -> dict[str, dict]:
    """Each strategy's parameters with their defaults, for the new-run dialog."""
    return {name: spec.defaults() for name, spec in STRATEGIES.items()}


def task_defaults() -> dict[str, dict]:
    """Each offered task's configuration defaults, for the new-run dialog."""
    return {path: runtask.describe(path)["config_defaults"] for path in runtask.offered_tasks()}
