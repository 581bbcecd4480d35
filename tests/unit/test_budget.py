"""A spec's cost (sikd_core.models.budget): counted on the meta device, once per network and input shape."""

from __future__ import annotations

import torch

from sikd_core.models import create_model
from sikd_core.models.budget import _network_size, estimate_cost
from sikd_core.spec import parse_spec


def _spec(**kw):
    return parse_spec({"train_dataset": "a", "network": "unet", "network_kwargs": {"widths": [4, 8, 16]},
                       "image_size": 32, "batch_size": 4, "epochs": 2, **kw})


def test_cost_counts_the_real_networks_parameters_and_is_measured_once_per_network():
    _network_size.cache_clear()
    spec = _spec()
    cost = estimate_cost(spec, in_channels=3, num_classes=2, num_pairs=40)
    real = sum(p.numel() for p in create_model("unet", 3, 2, widths=[4, 8, 16]).parameters())
    assert cost.parameters == real and cost.activation_elements > 0
    assert cost.memory_bytes > real * 4 and cost.total_steps == cost.steps_per_epoch * 6  # 3 stages x 2 epochs
    # a sweep over alpha or epochs shares the network: no second forward on the meta device
    again = estimate_cost(_spec(alpha=1.0, epochs=3), in_channels=3, num_classes=2, num_pairs=40)
    assert _network_size.cache_info().hits == 1 and again.parameters == cost.parameters
    # another width, batch or size is another network / input: counted anew, and bigger
    wider = estimate_cost(_spec(network_kwargs={"widths": [8, 16, 32]}), in_channels=3, num_classes=2, num_pairs=40)
    bigger = estimate_cost(_spec(batch_size=8), in_channels=3, num_classes=2, num_pairs=40)
    assert wider.parameters > cost.parameters and bigger.activation_elements == 2 * cost.activation_elements
    assert _network_size.cache_info().misses == 3


def test_unet_skips_initialisation_only_on_the_meta_device():
    with torch.device("meta"):
        meta = create_model("unet", 1, 2, widths=[4, 8, 16])
    assert all(p.is_meta for p in meta.parameters())
    torch.manual_seed(0)
    net = create_model("unet", 1, 2, widths=[4, 8, 16])
    # He (fan-in) normal on the CPU: std sqrt(2 / fan_in); PyTorch's default would be about 2.4x smaller
    w = dict(net.named_modules())["encoder.2.0"].weight  # 16 x 8 x 3 x 3: fan-in 72, 1152 values
    assert not w.is_meta and abs(float(w.std()) / (2 / 72) ** 0.5 - 1) < 0.1
