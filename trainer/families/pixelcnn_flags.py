"""PixelCNN++'s command line: openai/pixel-cnn's flags and defaults (the model side is
trainer/families/pixelcnn.py)."""
from trainer.families.family_flags import FamilyFlags


class PixelCNNFlags(FamilyFlags):
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
    sampler_names = ("fast", "naive")
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
