"""PixelCNN++: openai/pixel-cnn's optimizer around pixel_cnn_pp, sampled with fast_generation's
cached sampler; its flags and defaults are in pixelcnn_flags.py."""
import tensorflow as tf

from data.pixels import to_model_input, to_uint8
from fast_generation import sample_fast
from pixel_cnn_pp import model as pcnn
from trainer import export, optim
from trainer.families.base import Family
from trainer.families.pixelcnn_flags import PixelCNNFlags


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


class PixelCNNFamily(PixelCNNFlags, Family):
    samplers = {"fast": uint8_sampler(sample_fast), "naive": uint8_sampler(pcnn.sample_naive)}

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
