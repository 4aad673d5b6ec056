"""The exported λ in one's own PyTorch training loop: ``python -m examples.apply_lambda best.yaml [STEPS]``.

Public API only: `lambda_search.load_export` reads the export, `lambda_search.param_groups`
decays each network as the sweep did (Adam for decay_mode "l2", AdamW for "decoupled"), and
`lambda_search.penalty` measures λ·Σ‖w‖². Run from the repository root.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.nn import functional as F

import lambda_search
from examples.my_gan import build


def train_gan(generator: nn.Module, discriminator: nn.Module, images: torch.Tensor, export: lambda_search.Export,
              steps: int, rng: torch.Generator) -> tuple[float, float]:
    """Train in place as the sweep does: non-saturating loss, Adam(β1 = 0.5), λ where `apply_to` says."""
    train = export.config.train
    optimizer = torch.optim.Adam if export.decay_mode == "l2" else torch.optim.AdamW

    def make_optimizer(network: nn.Module, name: str) -> torch.optim.Optimizer:
        lam = export.lam if export.apply_to in (name, "both") else 0.0
        groups = lambda_search.param_groups(network, lam, export.decay_mode, export.penalize)
        return optimizer(groups, lr=train.lr, betas=(0.5, 0.999))

    generator_optimizer = make_optimizer(generator, "generator")
    discriminator_optimizer = make_optimizer(discriminator, "discriminator")
    for _ in range(steps):
        real = images[torch.randint(len(images), (train.batch_size,), generator=rng)]
        fake = generator(torch.randn(train.batch_size, train.latent_dim, generator=rng))
        discriminator_loss = (F.softplus(-discriminator(real)).mean()
                              + F.softplus(discriminator(fake.detach())).mean())
        discriminator_optimizer.zero_grad()
        discriminator_loss.backward()
        discriminator_optimizer.step()
        generator_loss = F.softplus(-discriminator(fake)).mean()
        generator_optimizer.zero_grad()
        generator_loss.backward()
        generator_optimizer.step()
    return generator_loss.item(), discriminator_loss.item()


def main(argv: list[str]) -> None:
    from lambda_search.data import load_images  # stands in for your own data: (N, C, H, W) in [-1, 1]

    export = lambda_search.load_export(argv[0])
    steps = int(argv[1]) if len(argv) > 1 else export.config.train.steps
    images = load_images(export.config.data).images
    channels, height, width = images.shape[1:]
    torch.manual_seed(export.seed)
    generator, discriminator = build((channels, height, width), export.config.train.latent_dim,
                                     export.config.train.width)
    generator_loss, discriminator_loss = train_gan(generator, discriminator, images, export, steps,
                                                   torch.Generator().manual_seed(export.seed))
    penalty = lambda_search.penalty(generator, export.lam, export.penalize).item()
    print(f"λ = {export.lam:.6g} ({export.decay_mode}, on the {export.apply_to}), {steps} steps: "
          f"generator loss {generator_loss:.4f}, discriminator loss {discriminator_loss:.4f}, "
          f"λ·Σ‖w‖² of the generator {penalty:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
