"""The penalty λ·Σ‖w‖²: its value, its gradient, and which tensors it covers."""

from __future__ import annotations

import torch
from torch import nn

from lambda_search.gan.models import build_gan
from lambda_search.gan.penalty import decayed_parameters, decoupled_decay_, penalized_networks, penalty, squared_norm


def test_value_and_gradient_match_a_hand_computation():
    weight = nn.Parameter(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
    kernel = nn.Parameter(torch.tensor([[[[2.0]]]]))
    term = penalty(0.1, [weight, kernel])
    # 0.1 · (1 + 4 + 9 + 0.25 + 4) = 1.825
    assert term.item() == torch.tensor(1.825).item()
    term.backward()
    # d/dw λ‖w‖² = 2λw
    assert torch.allclose(weight.grad, 0.2 * weight.detach())
    assert torch.allclose(kernel.grad, 0.2 * kernel.detach())


def test_biases_and_norm_scales_are_not_decayed_by_default():
    generator, discriminator = build_gan(16, (1, 28, 28), 8)
    for network in (generator, discriminator):
        decayed = {id(p) for p in decayed_parameters(network)}
        for name, parameter in network.named_parameters():
            is_kernel = name.endswith("weight") and parameter.dim() >= 2
            assert (id(parameter) in decayed) == is_kernel, name
        assert len(decayed_parameters(network, "all")) == len(list(network.parameters()))


def test_lambda_zero_changes_nothing():
    generator, _ = build_gan(16, (1, 28, 28), 8)
    parameters = decayed_parameters(generator)
    assert penalty(0.0, parameters).item() == 0.0
    assert squared_norm(parameters).item() > 0


def test_coupled_l2_equals_adam_weight_decay_two_lambda():
    torch.manual_seed(0)
    lam = 0.05
    start = torch.randn(4, 3)
    target = torch.randn(4, 3)

    in_loss = nn.Parameter(start.clone())
    adam = torch.optim.Adam([in_loss], lr=0.01)
    coupled = nn.Parameter(start.clone())
    adam_decay = torch.optim.Adam([coupled], lr=0.01, weight_decay=2 * lam)
    for _ in range(5):
        adam.zero_grad()
        ((in_loss - target).pow(2).sum() + penalty(lam, [in_loss])).backward()
        adam.step()
        adam_decay.zero_grad()
        (coupled - target).pow(2).sum().backward()
        adam_decay.step()
    assert torch.allclose(in_loss, coupled, atol=1e-6)


def test_apply_to_names_the_networks():
    assert penalized_networks("generator") == (True, False)
    assert penalized_networks("discriminator") == (False, True)
    assert penalized_networks("both") == (True, True)


def test_decoupled_decay_then_adam_equals_adamw_on_the_decayed_group():
    torch.manual_seed(0)
    lam, lr = 0.05, 0.01
    start_weight, start_bias = torch.randn(4, 3), torch.randn(4)
    target = torch.randn(4, 3)

    weight, bias = nn.Parameter(start_weight.clone()), nn.Parameter(start_bias.clone())
    adam = torch.optim.Adam([weight, bias], lr=lr)
    adamw_weight, adamw_bias = nn.Parameter(start_weight.clone()), nn.Parameter(start_bias.clone())
    adamw = torch.optim.AdamW([{"params": [adamw_weight], "weight_decay": lam},
                               {"params": [adamw_bias], "weight_decay": 0.0}], lr=lr)
    for _ in range(5):
        adam.zero_grad()
        ((weight + bias.unsqueeze(1) - target).pow(2).sum()).backward()
        decoupled_decay_(lam, lr, [weight])
        adam.step()
        adamw.zero_grad()
        ((adamw_weight + adamw_bias.unsqueeze(1) - target).pow(2).sum()).backward()
        adamw.step()
    assert torch.allclose(weight, adamw_weight, atol=1e-6)
    assert torch.allclose(bias, adamw_bias, atol=1e-6)


def test_l2_with_sgd_equals_decoupled_decay_of_two_lambda():
    lam, lr = 0.05, 0.1
    start = torch.randn(3, 3)
    in_loss, decoupled = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    penalty(lam, [in_loss]).backward()
    with torch.no_grad():
        in_loss -= lr * in_loss.grad
    decoupled_decay_(2 * lam, lr, [decoupled])
    assert torch.allclose(in_loss, decoupled, atol=1e-7)
