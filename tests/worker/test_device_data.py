"""A device's share of a dataset (fedcore.partition.split_indices and the built-in image task) on the real
Fashion-MNIST files."""
from __future__ import annotations

import numpy as np
import pytest

from fedcore.data import load_dataset
from fedcore.partition import partition
from fedcore.partition import split_indices
from fedcore.tasks import DataRequest, TaskDataError, load_task

TASK = load_task("fedcore.tasks.vision:image_classification")
CONFIG = TASK.validate_config({})


@pytest.fixture(scope="module")
def labels(fashion_dir):
    return load_dataset("fashion-mnist", root=fashion_dir)[1]


def test_train_and_eval_indices_are_disjoint_and_cover_the_partition(labels):
    part = partition(labels, num_partitions=4, scheme="dirichlet", seed=0, alpha=0.5)[1]
    train, held_out = split_indices(part, eval_fraction=0.1, seed=0, partition_index=1)
    assert np.intersect1d(train, held_out).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, held_out])), part)
    assert held_out.size == round(0.1 * part.size)


def test_the_split_is_deterministic_per_seed_and_partition_index(labels):
    part = partition(labels, num_partitions=3, seed=0)[0]
    first = split_indices(part, eval_fraction=0.1, seed=0, partition_index=0)
    again = split_indices(part, eval_fraction=0.1, seed=0, partition_index=0)
    other_index = split_indices(part, eval_fraction=0.1, seed=0, partition_index=1)
    other_seed = split_indices(part, eval_fraction=0.1, seed=1, partition_index=0)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other_index[1])
    assert not np.array_equal(first[1], other_seed[1])


def test_limit_caps_training_examples_and_shrinks_eval_in_proportion(labels):
    part = partition(labels, num_partitions=2, seed=0)[0]
    train, held_out = split_indices(part, eval_fraction=0.2, seed=0, partition_index=0, limit=100)
    assert train.size == 100
    assert held_out.size == 25  # 100 * 0.2 / 0.8: the same 80/20 ratio as without a limit
    assert np.intersect1d(train, held_out).size == 0


def test_a_zero_eval_fraction_keeps_everything_for_training(labels):
    part = np.arange(50)
    train, held_out = split_indices(part, eval_fraction=0.0, seed=0, partition_index=0)
    assert train.size == 50 and held_out.size == 0


def _request(fashion_dir, index: int) -> DataRequest:
    return DataRequest(root=fashion_dir, num_partitions=3, partition_index=index, seed=5, limit=200, eval_fraction=0.1)


def _indices(split) -> set[bytes]:
    # Images identify examples: the task returns tensors, not indices.
    return {bytes(row.numpy().tobytes()) for row in split.x}


def test_the_builtin_task_gives_each_device_its_own_disjoint_tensors(fashion_dir):
    mine = TASK.load_data(CONFIG, _request(fashion_dir, 2))
    again = TASK.load_data(CONFIG, _request(fashion_dir, 2))
    neighbour = TASK.load_data(CONFIG, _request(fashion_dir, 0))

    assert mine.num_train == 200 and mine.num_eval == 22
    assert tuple(mine.train.x.shape) == (200, 1, 28, 28) and tuple(mine.eval.y.shape) == (22,)
    assert not _indices(mine.train) & _indices(mine.eval)
    assert (mine.train.x == again.train.x).all() and (mine.eval.y == again.eval.y).all()
    # Partitions of devices sharing a seed never overlap.
    assert not (_indices(mine.train) | _indices(mine.eval)) & (_indices(neighbour.train) | _indices(neighbour.eval))


def test_the_builtin_task_refuses_a_dataset_other_than_the_runs(fashion_dir):
    request = DataRequest(root=fashion_dir, options={"dataset": "cifar10"})
    with pytest.raises(TaskDataError, match="trains on 'fashion-mnist', not --dataset 'cifar10'"):
        TASK.load_data(CONFIG, request)
