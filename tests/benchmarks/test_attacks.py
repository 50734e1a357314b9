"""The poisoning attacks of the benchmarks: each changes what it should of an attacker's contribution
and nothing else, and the weight claim is exactly what the server lets a device claim."""
import math

import numpy as np
import pytest
import torch

import attacks
from fedcore.tasks import DeviceData, TensorSplit
from fedplatform.errors import Invalid
from rounds.device_input import parse_num_examples


def _delta() -> dict[str, np.ndarray]:
    return {
        "w": np.array([[3.0, -4.0], [0.0, 0.5]], dtype=np.float32),
        "b": np.array([1.0, -2.0], dtype=np.float32),
        "num_batches_tracked": np.array(7, dtype=np.int64),
    }


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape
        np.testing.assert_array_equal(a[name], b[name])


def test_sign_flip_negates_the_float_tensors_and_leaves_the_rest_and_its_input_alone():
    delta = _delta()
    flipped = attacks.sign_flip(delta)
    _same(flipped, {"w": np.array([[-3.0, 4.0], [-0.0, -0.5]], dtype=np.float32),
                    "b": np.array([-1.0, 2.0], dtype=np.float32), "num_batches_tracked": np.array(7)})
    _same(delta, _delta())


def test_scaling_multiplies_the_float_tensors_by_a_thousand_in_their_dtype():
    scaled = attacks.scale(_delta())
    _same(scaled, {"w": np.array([[3000.0, -4000.0], [0.0, 500.0]], dtype=np.float32),
                   "b": np.array([1000.0, -2000.0], dtype=np.float32), "num_batches_tracked": np.array(7)})


def test_the_gaussian_noise_is_ten_times_the_honest_norm_spread_over_the_coordinates():
    # ||delta|| over the float coordinates: sqrt(9 + 16 + 0 + 0.25 + 1 + 4) = sqrt(30.25) = 5.5, d = 6.
    assert attacks.gaussian_sigma(_delta()) == pytest.approx(10 * 5.5 / math.sqrt(6))
    big = {"w": np.full((400, 500), 0.01, dtype=np.float32)}  # norm 0.01 * sqrt(200,000)
    noise = attacks.gaussian(big, np.random.default_rng(0))["w"]
    assert noise.dtype == np.float32 and noise.shape == (400, 500)
    assert noise.std() == pytest.approx(0.1, rel=0.01) and abs(noise.mean()) < 0.001
    assert np.linalg.norm(noise) == pytest.approx(10 * np.linalg.norm(big["w"]), rel=0.01)


def test_the_gaussian_noise_replaces_the_floats_is_seeded_and_keeps_integer_tensors():
    first = attacks.gaussian(_delta(), np.random.default_rng([0, 1, 0]))
    again = attacks.gaussian(_delta(), np.random.default_rng([0, 1, 0]))
    other = attacks.gaussian(_delta(), np.random.default_rng([0, 2, 0]))
    _same(first, again)
    assert not np.array_equal(first["w"], other["w"])
    assert not np.array_equal(first["w"], _delta()["w"])
    assert first["w"].dtype == np.float32 and first["b"].shape == (2,)
    np.testing.assert_array_equal(first["num_batches_tracked"], np.array(7))


def test_label_flipping_maps_y_to_nine_minus_y_in_the_training_split_only():
    x = torch.arange(20, dtype=torch.float32).reshape(10, 1, 2)
    y = torch.arange(10)
    held_out = TensorSplit(x[:3], y[:3])
    data = DeviceData(TensorSplit(x, y), held_out, description="share")
    poisoned = attacks.label_flip(data)
    assert poisoned.train.y.tolist() == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert poisoned.train.x is x and poisoned.eval is held_out and poisoned.description == "share"
    assert data.train.y.tolist() == list(range(10))  # the honest share is untouched
    assert attacks.poison_data("label_flip", data).train.y.tolist() == poisoned.train.y.tolist()
    assert attacks.poison_data("sign_flip", data) is data and attacks.poison_data(None, data) is data


def test_the_weight_claim_is_the_largest_count_the_server_accepts():
    claim = attacks.max_weight_claim(540)
    # Registration takes up to this count (clients/serializers.py); an upload may claim what was registered.
    assert parse_num_examples(str(claim), registered=claim) == claim
    with pytest.raises(Invalid):
        parse_num_examples(str(claim + 1), registered=claim)


def test_registration_accepts_the_claimed_count_and_nothing_larger():
    from clients.serializers import RegisterSerializer

    claim = attacks.max_weight_claim(540)
    assert RegisterSerializer(data={"name": "a", "num_examples": claim}).is_valid()
    assert not RegisterSerializer(data={"name": "a", "num_examples": claim + 1}).is_valid()


def test_each_attack_changes_only_its_part_of_the_upload():
    rng = np.random.default_rng(0)
    delta = _delta()
    for attack in (None, "label_flip"):
        sent, weight = attacks.poison_update(attack, delta, 540, rng=rng)
        assert sent is delta and weight == 540
    sent, weight = attacks.poison_update("sign_flip", delta, 540, rng=rng)
    _same(sent, attacks.sign_flip(delta))
    assert weight == 540
    sent, weight = attacks.poison_update("scale1000", delta, 540, rng=rng)
    _same(sent, attacks.scale(delta, 1000.0))
    assert weight == 540
    sent, weight = attacks.poison_update("gaussian", delta, 540, rng=np.random.default_rng(3))
    _same(sent, attacks.gaussian(delta, np.random.default_rng(3)))
    assert weight == 540
    sent, weight = attacks.poison_update("max_weight", delta, 540, rng=rng)
    _same(sent, attacks.sign_flip(delta))
    assert weight == attacks.max_weight_claim(540) > 540


def test_an_unknown_attack_is_refused():
    with pytest.raises(ValueError, match="unknown attack"):
        attacks.poison_update("backdoor", _delta(), 1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown attack"):
        attacks.poison_data("backdoor", DeviceData(TensorSplit(torch.zeros(1, 1), torch.zeros(1))))


def test_the_simulation_attacks_only_when_asked_and_only_with_the_attackers():
    from experiments import simulate
    from grids import BASE

    tiny = {**BASE, "clients": 2, "rounds": 1, "train_examples": 200, "test_examples": 100, "batch_size": 16}

    def run(**extra) -> dict:
        rows: list[dict] = []
        simulate({**tiny, **extra}, 0, rows.append)
        return {k: v for k, v in rows[0].items() if k != "seconds"}

    clean = run()
    assert run(attack=None, attackers=2) == clean  # the grids without the keys run as before
    flipped = run(attack="sign_flip", attackers=1)
    assert flipped["test_accuracy"] != clean["test_accuracy"]
    assert flipped["train_loss"] == clean["train_loss"]  # the attackers trained honestly, then flipped
    claimed = run(attack="max_weight", attackers=1)
    assert claimed["test_accuracy"] != clean["test_accuracy"]
