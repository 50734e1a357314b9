"""A user's task outside fedcore, offered to the server through FEDPLATFORM_TASKS in tests."""
from torch import nn

from fedcore.tasks import Task, TaskConfigError


class Wide(Task):
    title = "a linear model of configurable width"
    config_defaults = {"width": 4}

    def validate_config(self, config):
        values = super().validate_config(config)
        if values["width"] < 1:
            raise TaskConfigError("width must be at least 1")
        return values

    def build_model(self, config):
        return nn.Linear(config["width"], 2)

    def load_data(self, config, request):
        raise NotImplementedError  # the server never loads device data


task = Wide()
