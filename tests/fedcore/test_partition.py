import numpy as np
import pytest

from fedcore.partition import SCHEMES, label_skew, partition


@pytest.fixture
def labels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 10, size=2000)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_partitions_are_disjoint_and_complete(labels, scheme):
    parts = partition(labels, num_partitions=7, scheme=scheme, seed=1)
    joined = np.concatenate(parts)
    assert len(joined) == len(labels)
    np.testing.assert_array_equal(np.sort(joined), np.arange(len(labels)))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_partitions_are_sorted_int64_arrays(labels, scheme):
    for p in partition(labels, num_partitions=5, scheme=scheme):
        assert p.dtype == np.int64
        assert np.all(np.diff(p) > 0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_same_arguments_give_the_same_partitions(labels, scheme):
    a = partition(labels, num_partitions=6, scheme=scheme, seed=3)
    b = partition(labels, num_partitions=6, scheme=scheme, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_different_seeds_give_different_partitions(labels, scheme):
    a = partition(labels, num_partitions=6, scheme=scheme, seed=3)
    b = partition(labels, num_partitions=6, scheme=scheme, seed=4)
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))


def test_iid_partition_sizes_differ_by_at_most_one(labels):
    sizes = [len(p) for p in partition(labels, num_partitions=7, scheme="iid")]
    assert max(sizes) - min(sizes) <= 1


def test_label_skew_grows_as_dirichlet_alpha_falls(labels):
    skews = [
        label_skew(labels, partition(labels, num_partitions=10, scheme="dirichlet", alpha=alpha, seed=0))
        for alpha in (100.0, 1.0, 0.1)
    ]
    assert skews[0] < skews[1] < skews[2]
    assert skews[0] < 0.1 and skews[2] > 0.5


def test_iid_partitions_have_little_label_skew(labels):
    assert label_skew(labels, partition(labels, num_partitions=4, scheme="iid")) < 0.1


def test_a_single_partition_holding_everything_has_zero_skew(labels):
    assert label_skew(labels, [np.arange(len(labels))]) == 0.0


def test_dirichlet_never_returns_an_empty_partition_even_for_tiny_alpha():
    few = np.random.default_rng(1).integers(0, 10, size=120)
    parts = partition(few, num_partitions=60, scheme="dirichlet", alpha=0.01, seed=5)
    assert min(len(p) for p in parts) >= 1
    assert sum(len(p) for p in parts) == len(few)


def test_shards_give_each_partition_about_shards_per_partition_labels():
    balanced = np.repeat(np.arange(10), 100)  # shards of 50 never straddle two classes
    parts = partition(balanced, num_partitions=10, scheme="shards", shards_per_partition=2, seed=2)
    assert all(1 <= len(np.unique(balanced[p])) <= 2 for p in parts)


def test_shards_spread_the_remainder_and_stay_complete():
    odd = np.random.default_rng(2).integers(0, 10, size=1003)
    parts = partition(odd, num_partitions=7, scheme="shards", shards_per_partition=3)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(1003))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_partitions": 0},
        {"num_partitions": 2001},
        {"num_partitions": 2, "scheme": "dirichlet", "alpha": 0.0},
        {"num_partitions": 2, "scheme": "dirichlet", "alpha": -1.0},
        {"num_partitions": 2, "scheme": "dirichlet", "alpha": float("nan")},
        {"num_partitions": 2, "scheme": "bogus"},
        {"num_partitions": 2, "scheme": "shards", "shards_per_partition": 0},
        {"num_partitions": 1000, "scheme": "shards", "shards_per_partition": 3},
    ],
    ids=["zero-parts", "more-parts-than-labels", "alpha-zero", "alpha-negative", "alpha-nan",
         "unknown-scheme", "zero-shards", "more-shards-than-labels"],
)
def test_bad_arguments_are_rejected(labels, kwargs):
    with pytest.raises(ValueError):
        partition(labels, **kwargs)


def test_non_integer_labels_are_rejected():
    with pytest.raises(ValueError):
        partition(np.array([0.5, 1.5]), num_partitions=1)


def test_quantity_skew_varies_the_sizes_and_keeps_every_partitions_label_mix():
    parts = partition(labels := np.random.default_rng(1).integers(0, 10, size=20000), num_partitions=5,
                      scheme="quantity", alpha=0.5, seed=2)
    sizes = sorted(len(p) for p in parts)
    assert sizes[-1] > 3 * sizes[0]  # alpha 0.5: very unequal amounts of data
    big = [p for p in parts if len(p) >= 1000]
    assert label_skew(labels, big) < 0.05  # each of them looks like the whole dataset
    assert label_skew(labels, partition(labels, num_partitions=5, scheme="dirichlet", alpha=0.5, seed=2)) > 0.2
