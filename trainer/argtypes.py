"""argparse value types shared by the trainer's flags (trainer.flags) and the family adapters
(trainer.families.*), which trainer.flags imports, so they cannot import it back."""
import argparse


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


# --precision values (trainer.precision gives their dtypes); here so that parsing flags needs no
# TensorFlow
PRECISIONS = ("fp32", "bf16", "fp16")
