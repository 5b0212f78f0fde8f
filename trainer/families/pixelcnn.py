"""PixelCNN++: openai/pixel-cnn's flags, defaults and optimizer around pixel_cnn_pp, sampled with
fast_generation's cached sampler."""
import tensorflow as tf

from data.pixels import to_model_input, to_uint8
from fast_generation import sample_fast
from pixel_cnn_pp import model as pcnn
from trainer import export, optim
from trainer.families.base import Family


def uint8_sampler(draw):
    """A sampler (uint8 images; int labels -> one-hot h) around a float sampler of pixel_cnn_pp."""
    def sample(model, num_images, seed, labels=None, ema=None):
        h = None if labels is None else class_input(model, tf.constant(labels, tf.int32))
        return to_uint8(draw(model, num_images, seed, h=h, ema=ema)).numpy()
    return sample


def class_input(model, labels):
    """One-hot h for a class-conditional model, None otherwise."""
    num_classes = model.config.num_classes
    return tf.one_hot(labels, num_classes) if num_classes else None


class PixelCNNFamily(Family):
    name = "pixelcnn"
    profiles = {
        # openai/pixel-cnn's CIFAR-10 setting (train.py): 16 images on each of 8 GPUs.
        "paper": dict(nr_resnet=5, nr_filters=160, nr_logistic_mix=10, batch_size=16, nr_gpu=8,
                      save_interval=20, max_epochs=5000, polyak_decay=0.9995),
        # `python3 train.py` trains, evaluates and samples in minutes on 2 CPU cores (README).
        # A run this short needs a shorter Polyak average than 0.9995, whose average would
        # still be mostly the initial weights.
        "cpu": dict(nr_resnet=1, nr_filters=16, nr_logistic_mix=5, batch_size=16, nr_gpu=1,
                    save_interval=2, max_epochs=2, polyak_decay=0.99, sample_batch_size=16),
    }
    # "fast" (the cached sampler) draws the naive sampler's images up to rare +-1 rounding flips
    # (tests/test_fast_generation.py) at a fraction of the cost.
    samplers = {"fast": uint8_sampler(sample_fast), "naive": uint8_sampler(pcnn.sample_naive)}
    default_sampler = "fast"

    def add_arguments(self, parser):
        group = parser.add_argument_group("PixelCNN++ (openai/pixel-cnn flags; unset: from the "
                                          "data set's profile)")
        group.add_argument("-q", "--nr_resnet", type=int, default=None,
                           help="gated ResNet blocks per stage")
        group.add_argument("-n", "--nr_filters", type=int, default=None, help="channels")
        group.add_argument("-m", "--nr_logistic_mix", type=int, default=None,
                           help="logistic mixture components")
        group.add_argument("-z", "--resnet_nonlinearity", default="concat_elu",
                           choices=("concat_elu", "elu", "relu"),
                           help="nonlinearity of the gated ResNet blocks")
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

    def model_config(self, args, info):
        if args.class_conditional and not info.num_classes:
            raise ValueError(f"--class_conditional: data set {info.name!r} has no labels; drop "
                             f"the flag or use a labelled set")
        config = pcnn.PixelCNNConfig(
            image_shape=info.image_shape, nr_resnet=args.nr_resnet, nr_filters=args.nr_filters,
            nr_logistic_mix=args.nr_logistic_mix, resnet_nonlinearity=args.resnet_nonlinearity,
            dropout_p=args.dropout_p,
            num_classes=info.num_classes if args.class_conditional else 0,
            energy_distance=args.energy_distance)
        return config.to_dict()

    def build(self, config):
        return pcnn.PixelCNNPP(pcnn.PixelCNNConfig.from_dict(config))

    def initialize(self, model, images, labels, seed):
        model.initialize(to_model_input(images), class_input(model, labels), seed=seed)

    def nats(self, model, images, labels, training=False, ema=None, seed=None, step_seed=None):
        """Dropout masks are per replica, drawn from `seed`."""
        return model.loss(to_model_input(images), class_input(model, labels),
                          training=training, ema=ema, seed=seed)

    def make_optimizers(self, args, model, steps_per_epoch):
        """openai/pixel-cnn's Adam: beta1 0.95, beta2 0.9995, lr * lr_decay^t."""
        return {"optimizer": optim.Adam(
            tuple(model.trainable_variables),
            optim.exponential_decay(args.learning_rate, args.lr_decay),
            beta1=0.95, beta2=0.9995, epsilon=1e-8)}

    def export_module(self, model, ema, args):
        return export.PixelCNNModule(model, ema, args.n)


FAMILY = PixelCNNFamily()
