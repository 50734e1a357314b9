"""worker.localdata on the real Fashion-MNIST files."""
from __future__ import annotations

import numpy as np
import pytest

from fedcore.data import load_dataset
from fedcore.partition import partition
from worker.localdata import prepare_data, split_indices


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


def test_prepare_data_gives_this_workers_disjoint_tensors(fashion_dir):
    common = dict(root=fashion_dir, num_partitions=3, seed=5, limit=200, eval_fraction=0.1)
    mine = prepare_data("fashion-mnist", partition_index=2, **common)
    again = prepare_data("fashion-mnist", partition_index=2, **common)
    neighbour = prepare_data("fashion-mnist", partition_index=0, **common)

    assert mine.num_train == 200 and mine.num_eval == 22
    assert tuple(mine.train_x.shape) == (200, 1, 28, 28) and tuple(mine.eval_y.shape) == (22,)
    assert np.intersect1d(mine.train_indices, mine.eval_indices).size == 0
    assert np.array_equal(mine.train_indices, again.train_indices)
    assert np.array_equal(mine.eval_indices, again.eval_indices)
    # Partitions of workers sharing a seed never overlap.
    mine_all = np.concatenate([mine.train_indices, mine.eval_indices])
    theirs_all = np.concatenate([neighbour.train_indices, neighbour.eval_indices])
    assert np.intersect1d(mine_all, theirs_all).size == 0
