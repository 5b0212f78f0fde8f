"""PixelCNN++ adapter: openai/pixel-cnn's flags, defaults and optimizer around pixel_cnn_pp."""
import numpy as np
import tensorflow as tf

from fast_generation import sample_fast
from pixel_cnn_pp import model as pcnn
from trainer import optim

NAME = "pixelcnn"

# openai/pixel-cnn's CIFAR-10 setting (train.py:23-50): 16 images on each of 8 GPUs.
PAPER_SETTING = dict(nr_resnet=5, nr_filters=160, nr_logistic_mix=10, batch_size=16, nr_gpu=8,
                     save_interval=20, max_epochs=5000, polyak_decay=0.9995)
# A model small enough that `python3 train.py` trains, evaluates and samples in a few minutes on
# 2 CPU cores: measured 3 min wall (113 s CPU) on a shared 2-core machine, 318 steps, test
# bits/dim 6.56 after epoch 0 and 5.05 after epoch 1. A run this short needs a shorter Polyak
# average: at 0.9995 the averaged weights would still be mostly the initial ones (9.2 bits/dim
# after one epoch of a 32-filter model, measured).
CPU_SETTING = dict(nr_resnet=1, nr_filters=16, nr_logistic_mix=5, batch_size=16, nr_gpu=1,
                   save_interval=2, max_epochs=2, polyak_decay=0.99, sample_batch_size=16)
# The one per-data-set table of defaults; data sets not listed get the paper setting.
DEFAULTS_BY_DATA_SET = {"cifar": PAPER_SETTING, "imagenet": PAPER_SETTING,
                        "real32": CPU_SETTING, "fashion_mnist": CPU_SETTING,
                        "folder": CPU_SETTING}


def defaults(data_set):
    return dict(DEFAULTS_BY_DATA_SET.get(data_set, PAPER_SETTING))


def add_arguments(parser):
    group = parser.add_argument_group("PixelCNN++ (openai/pixel-cnn flags; None = from the "
                                      "per-data-set table in trainer/families/pixelcnn.py)")
    group.add_argument("-q", "--nr_resnet", type=int, default=None,
                       help="gated ResNet blocks per stage")
    group.add_argument("-n", "--nr_filters", type=int, default=None, help="channels")
    group.add_argument("-m", "--nr_logistic_mix", type=int, default=None,
                       help="logistic mixture components")
    group.add_argument("-z", "--resnet_nonlinearity", default="concat_elu",
                       choices=("concat_elu", "elu", "relu"))
    group.add_argument("-c", "--class_conditional", action="store_true",
                       help="condition on the data set's labels")
    group.add_argument("-ed", "--energy_distance", action="store_true",
                       help="train with the energy distance instead of the likelihood")
    group.add_argument("-l", "--learning_rate", type=float, default=0.001,
                       help="base learning rate")
    group.add_argument("-e", "--lr_decay", type=float, default=0.999995,
                       help="learning rate multiplied by this before every step")
    group.add_argument("-p", "--dropout_p", type=float, default=0.5,
                       help="dropout rate in every gated ResNet block")
    group.add_argument("--polyak_decay", type=float, default=None,
                       help="decay of the Polyak (EMA) averages used for test and samples")


def model_config(args, info):
    if args.class_conditional and not info.num_classes:
        raise ValueError(f"--class_conditional: data set {info.name!r} has no labels; drop the "
                         f"flag or use a labelled set")
    config = pcnn.PixelCNNConfig(
        image_shape=info.image_shape, nr_resnet=args.nr_resnet, nr_filters=args.nr_filters,
        nr_logistic_mix=args.nr_logistic_mix, resnet_nonlinearity=args.resnet_nonlinearity,
        dropout_p=args.dropout_p, num_classes=info.num_classes if args.class_conditional else 0,
        energy_distance=args.energy_distance)
    return config.to_dict()


def build(config):
    return pcnn.PixelCNNPP(pcnn.PixelCNNConfig.from_dict(config))


def _class_input(model, labels):
    """One-hot h for a class-conditional model, None otherwise."""
    num_classes = model.config.num_classes
    return tf.one_hot(labels, num_classes) if num_classes else None


def initialize(model, images, labels, seed):
    model.initialize(pcnn.to_model_input(images), _class_input(model, labels), seed=seed)


def nats(model, images, labels, training=False, ema=None, seed=None, step_seed=None):
    """Dropout masks are per replica, drawn from `seed`; `step_seed` is not needed."""
    return model.loss(pcnn.to_model_input(images), _class_input(model, labels),
                      training=training, ema=ema, seed=seed)


bits_per_dim = pcnn.bits_per_dim


def make_optimizer(args, variables, steps_per_epoch):
    return optim.Adam(variables, optim.exponential_decay(args.learning_rate, args.lr_decay),
                      beta1=0.95, beta2=0.9995, epsilon=1e-8)


def ema_decay(args, steps_per_epoch):
    return args.polyak_decay


def _uint8_sampler(draw):
    """A SAMPLERS entry (uint8 images, labels -> one-hot h) around a float sampler."""
    def sample(model, num_images, seed, labels=None, ema=None):
        h = None if labels is None else _class_input(model, np.asarray(labels, np.int32))
        return pcnn.to_uint8(draw(model, num_images, seed, h=h, ema=ema)).numpy()
    return sample


# "fast" (fast_generation's cached sampler) draws the same images as "naive" (a full forward pass
# per pixel) for the same seed (tests/test_fast_generation.py) at a fraction of the cost.
SAMPLERS = {"fast": _uint8_sampler(sample_fast), "naive": _uint8_sampler(pcnn.sample_naive)}
DEFAULT_SAMPLER = "fast"
