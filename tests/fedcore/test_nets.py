import pytest
import torch

from fedcore.nets import ARCHITECTURES, build_model, count_parameters


@pytest.mark.parametrize(
    "arch, channels, size",
    [("cnn", 1, 28), ("cnn", 3, 32), ("resnet18", 3, 32), ("resnet50", 3, 32), ("resnet18", 1, 28)],
)
def test_each_architecture_outputs_one_logit_per_class(arch, channels, size):
    model = build_model(arch, in_channels=channels, num_classes=10, image_size=size, seed=0).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 10)


def test_the_fashion_mnist_cnn_has_about_422k_parameters():
    assert count_parameters(build_model("cnn", in_channels=1, image_size=28)) == 421_642


def test_cifar_resnet18_has_about_11_17m_parameters():
    assert count_parameters(build_model("resnet18", in_channels=3, num_classes=10)) == 11_173_962


def test_resnets_use_the_cifar_stem_without_max_pool():
    model = build_model("resnet18", in_channels=3)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)


@pytest.mark.parametrize("arch", ["cnn", "resnet18"])
def test_the_same_seed_builds_identical_weights(arch):
    a = build_model(arch, in_channels=3, seed=42).state_dict()
    b = build_model(arch, in_channels=3, seed=42).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_different_seeds_build_different_weights():
    a = build_model("cnn", in_channels=1, seed=1).state_dict()
    b = build_model("cnn", in_channels=1, seed=2).state_dict()
    assert not torch.equal(a["features.0.weight"], b["features.0.weight"])


def test_seeded_builds_leave_the_global_rng_untouched():
    before = torch.random.get_rng_state()
    build_model("cnn", in_channels=1, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_unknown_architectures_are_rejected():
    with pytest.raises(ValueError, match="vgg"):
        build_model("vgg", in_channels=1)


def test_architectures_lists_every_buildable_model():
    assert ARCHITECTURES == ("cnn", "resnet18", "resnet50")
