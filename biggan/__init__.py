"""BigGAN (Brock, Donahue & Simonyan 2019) after ajbrock/BigGAN-PyTorch: `layers` holds the
spectrally normalised layers, conditional batch norm with standing statistics, self-attention and
the orthogonal regulariser; `model` the generator, discriminator, losses, training step and the
sampling helpers (truncation, interpolation sheets, truncation sweeps)."""
