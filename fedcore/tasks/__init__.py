"""Tasks: a user's model, data and training loop, federated by the platform (see docs/your-own-task.md)."""
from fedcore.tasks.base import (
    DataRequest,
    DeviceData,
    OnBatch,
    Task,
    TaskConfigError,
    TaskDataError,
    TaskError,
    TaskNotFound,
    TensorSplit,
    TrainParams,
)
from fedcore.tasks.registry import (
    BUILTIN_TASK,
    canonical_config,
    installed_tasks,
    load_task,
    manifest_digest,
    seeded_model,
)
from fedcore.tasks.splits import device_indices

__all__ = [
    "BUILTIN_TASK", "DataRequest", "DeviceData", "OnBatch", "Task", "TaskConfigError", "TaskDataError",
    "TaskError", "TaskNotFound", "TensorSplit", "TrainParams", "canonical_config", "device_indices",
    "installed_tasks", "load_task", "manifest_digest", "seeded_model",
]
