"""The trainer every model family shares: devices, optimizers, EMA, checkpoints, logging, image
grids and the training loop. Model-specific pieces live behind the adapters in
`trainer.families`; `train.py` and `sample.py` only wire these modules together."""
