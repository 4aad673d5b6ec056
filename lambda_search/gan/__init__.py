"""The GAN and its training: networks, the weight-decay penalty, the training loop, checkpoints.

Knows nothing of Optuna; imports torch.
"""
