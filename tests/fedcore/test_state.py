import numpy as np
import pytest
import torch

from fedcore.state import add, arrays_to_state, load_arrays, state_to_arrays, subtract


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))


def test_state_to_arrays_follows_state_dict_order_and_dtypes():
    model = small_model()
    arrays = state_to_arrays(model)
    assert list(arrays) == list(model.state_dict())
    assert arrays["1.num_batches_tracked"].dtype == np.int64
    assert arrays["0.weight"].dtype == np.float32


def test_state_to_arrays_returns_copies_not_views_of_parameters():
    model = small_model()
    arrays = state_to_arrays(model)
    arrays["0.weight"][:] = 99.0
    assert not torch.any(model[0].weight == 99.0)


def test_bfloat16_tensors_become_float32_arrays():
    arrays = state_to_arrays({"w": torch.ones(2, dtype=torch.bfloat16)})
    assert arrays["w"].dtype == np.float32


def test_load_arrays_round_trips_weights_into_another_model():
    source, target = small_model(), torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    load_arrays(target, state_to_arrays(source))
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v)


def test_load_arrays_casts_to_each_tensor_dtype():
    model = small_model().half()
    arrays = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in state_to_arrays(model).items()}
    load_arrays(model, arrays)
    assert model[0].weight.dtype == torch.float16


def test_load_arrays_rejects_missing_names():
    arrays = state_to_arrays(small_model())
    del arrays["0.bias"]
    with pytest.raises(ValueError, match="0.bias"):
        load_arrays(small_model(), arrays)


def test_load_arrays_rejects_wrong_shapes():
    arrays = state_to_arrays(small_model())
    arrays["0.weight"] = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="0.weight"):
        load_arrays(small_model(), arrays)


def test_arrays_to_state_makes_tensors_that_do_not_share_memory():
    a = np.zeros(3, np.float32)
    state = arrays_to_state({"a": a})
    a[0] = 5.0
    assert state["a"][0].item() == 0.0


def test_subtract_keeps_integer_tensors_integer():
    delta = subtract({"n": np.array(10, np.int64)}, {"n": np.array(4, np.int64)})
    assert delta["n"].dtype == np.int64 and delta["n"] == 6


def test_adding_a_difference_back_restores_the_original():
    rng = np.random.default_rng(0)
    a = {"w": rng.standard_normal(5).astype(np.float32), "n": np.array(7, np.int64), "m": np.array([True, False])}
    b = {"w": rng.standard_normal(5).astype(np.float32), "n": np.array(3, np.int64), "m": np.array([True, True])}
    back = add(b, subtract(a, b))
    np.testing.assert_allclose(back["w"], a["w"], rtol=1e-6)
    assert back["n"] == 7
    np.testing.assert_array_equal(back["m"], a["m"])


def test_arithmetic_rejects_mismatched_names():
    with pytest.raises(ValueError):
        add({"a": np.zeros(1)}, {"b": np.zeros(1)})
