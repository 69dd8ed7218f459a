"""Generative models: adversarial pairs (GAN, DCGAN) and autoencoders (VAE, deep autoencoder), one file per paper.

Each model is one module holding both of its halves (``generator``/``discriminator`` or ``encoder``/``decoder``),
with ``loss(batch)`` returning the paper's objective and ``sample(n)``.
"""
