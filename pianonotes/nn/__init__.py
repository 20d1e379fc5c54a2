"""AudioNet and the seed's baselines: architectures, checkpoints, training data, training."""
