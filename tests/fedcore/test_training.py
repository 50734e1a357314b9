import math

import pytest
import torch

from fedcore.data import DATASETS, load_dataset, to_tensors
from fedcore.nets import build_model
from fedcore.training import evaluate, pick_device, train

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def fashion_subset() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_dataset("fashion-mnist", train=False)
    return to_tensors(x[:384], y[:384], DATASETS["fashion-mnist"])


def fresh_cnn() -> torch.nn.Module:
    return build_model("cnn", in_channels=1, image_size=28, seed=0)


def test_two_epochs_of_training_beat_the_untrained_model(fashion_subset):
    x, y = fashion_subset
    model = fresh_cnn()
    before = evaluate(model, x, y, device=CPU)
    train(model, x, y, epochs=2, batch_size=32, lr=0.05, device=CPU)
    after = evaluate(model, x, y, device=CPU)
    assert after["accuracy"] > before["accuracy"] + 0.3
    assert after["loss"] < before["loss"]


def test_train_reports_last_epoch_metrics(fashion_subset):
    x, y = fashion_subset
    result = train(fresh_cnn(), x[:64], y[:64], epochs=1, batch_size=16, lr=0.01, device=CPU)
    assert result["examples"] == 64
    assert 0.0 <= result["accuracy"] <= 1.0 and math.isfinite(result["loss"]) and result["loss"] > 0


def test_evaluate_returns_accuracy_between_zero_and_one(fashion_subset):
    x, y = fashion_subset
    result = evaluate(fresh_cnn(), x, y, device=CPU, batch_size=100)
    assert 0.0 <= result["accuracy"] <= 1.0
    assert result["examples"] == len(x) and result["loss"] > 0


def test_on_batch_is_called_once_per_batch_per_epoch(fashion_subset):
    x, y = fashion_subset
    calls = []
    train(fresh_cnn(), x[:50], y[:50], epochs=3, batch_size=16, lr=0.01, device=CPU,
          on_batch=lambda *args: calls.append(args))
    assert len(calls) == 3 * 4
    assert [c[:3] for c in calls[:4]] == [(0, 0, 4), (0, 1, 4), (0, 2, 4), (0, 3, 4)]
    assert calls[-1][0] == 2 and all(isinstance(c[3], float) for c in calls)


def test_training_leaves_the_model_in_eval_mode(fashion_subset):
    x, y = fashion_subset
    model = fresh_cnn().train()
    train(model, x[:16], y[:16], epochs=1, batch_size=8, lr=0.01, device=CPU)
    assert not model.training


def test_the_same_seed_gives_identical_trained_weights(fashion_subset):
    x, y = fashion_subset
    a, b = fresh_cnn(), fresh_cnn()
    for model in (a, b):
        train(model, x[:64], y[:64], epochs=1, batch_size=16, lr=0.01, device=CPU, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_a_non_finite_loss_stops_training(fashion_subset):
    x, y = fashion_subset
    poisoned = x[:16].clone()
    poisoned[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError):
        train(fresh_cnn(), poisoned, y[:16], epochs=1, batch_size=16, lr=0.01, device=CPU)


def test_a_blown_up_but_finite_loss_stops_training_too(fashion_subset):
    # A learning rate far too large on two classes: the weights explode while the loss stays finite
    # for a while, and such an update would wreck the global model.
    x, y = fashion_subset
    two_classes = (y == 0) | (y == 1)
    with pytest.raises(FloatingPointError, match=r"loss became \d"):  # a number, not nan or inf
        train(fresh_cnn(), x[two_classes][:256], y[two_classes][:256], epochs=3, batch_size=32, lr=50.0,
              momentum=0.9, device=CPU)


def test_pick_device_cpu_is_cpu():
    assert pick_device("cpu") == CPU


def test_pick_device_refuses_cuda_when_it_is_unavailable(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        pick_device("cuda")


def test_pick_device_auto_falls_back_to_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == CPU


def test_pick_device_rejects_unknown_names():
    with pytest.raises(ValueError):
        pick_device("tpu")
