"""Glow's command line: openai/glow's flags and defaults (the model side is
trainer/families/glow.py)."""
import argparse

from trainer.argtypes import positive_int
from trainer.families.family_flags import FamilyFlags
from trainer.families.profiles import kind_of_data_set

# openai/glow's CIFAR-10 setting (README: --n_level 3 --depth 32 --learntop --lr 0.001, defaults
# for the rest, additive coupling as its ablation; 8 GPUs x 64 images; full test and samples
# every 50 epochs). learntop is on because every README command sets it (the flag's own default
# was off). sample_batch_size 64 = 8 temperatures x 8 columns.
PAPER_PROFILE = dict(n_levels=3, depth=32, width=512, flow_permutation=2, flow_coupling=0,
                     learntop=True, n_bits_x=8, batch_size=64, nr_gpu=8, learning_rate=0.001,
                     epochs_warmup=10.0, polyak_epochs=1.0, optimizer="adamax",
                     gradient_checkpointing=1, save_interval=50, max_epochs=1000000,
                     sample_batch_size=64, dal=0)
# The README's CelebA-HQ command: 6 levels, 5-bit data, and 64 images per GPU at the 32 px anchor
# resolution, i.e. 1 image per GPU at 256 px (openai/glow train.py).
CELEBAHQ_PROFILE = dict(n_levels=6, n_bits_x=5, batch_size=1)
# The data sets' image sizes without --image_size (data/), where not 32.
PAPER_IMAGE_SIZES = {"celebahq": 256, "celebahq_pggan": 256, "celebahq_images": 256}
# The values glow.model (PERMUTATIONS, COUPLINGS) and data.augment (LEVELS) accept, spelt out
# because those modules import TensorFlow; tests/test_trainer_flags.py checks that they agree.
PERMUTATIONS = (0, 1, 2, 3)
COUPLINGS = (0, 1)
AUGMENTATION_LEVELS = (0, 1, 2)


class GlowFlags(FamilyFlags):
    name = "glow"
    profiles = {
        "paper": PAPER_PROFILE,
        # `python3 train.py --model glow` trains, evaluates and samples 4 epochs in minutes on 2
        # CPU cores (README).
        "cpu": dict(n_levels=3, depth=8, width=128, flow_permutation=2, flow_coupling=0,
                    learntop=True, n_bits_x=8, batch_size=32, nr_gpu=1, learning_rate=0.001,
                    epochs_warmup=1.0, polyak_epochs=1.0, optimizer="adamax",
                    gradient_checkpointing=0, save_interval=1, max_epochs=4,
                    sample_batch_size=64, dal=0),
    }
    # openai/glow augmented MNIST and CIFAR-10 by default (--dal 1: random shifts of up to 10%);
    # its TFRecord data sets (ImageNet, CelebA-HQ, LSUN) were not augmented.
    data_set_profiles = {"cifar": dict(dal=1), "celebahq": CELEBAHQ_PROFILE,
                         "celebahq_pggan": CELEBAHQ_PROFILE, "celebahq_images": CELEBAHQ_PROFILE}
    sampler_names = ("temperatures",)
    default_sampler = "temperatures"

    def defaults(self, data_set, image_size=None):
        """The profiles, and on the paper data sets openai/glow's init batch: 256 images at
        its 32 px anchor size, scaled by (32 / image size)^2 (256 for CIFAR-10, 4 for
        CelebA-HQ at 256 px)."""
        values = super().defaults(data_set)
        if kind_of_data_set(data_set) == "paper":
            size = image_size or PAPER_IMAGE_SIZES.get(data_set, 32)
            values["init_batch_size"] = max(1, 256 * 32 ** 2 // size ** 2)
        return values

    def add_arguments(self, parser):
        group = parser.add_argument_group("Glow (openai/glow flags; unset: from the data set's "
                                          "profile)")
        group.add_argument("--n_levels", "--n_level", type=positive_int, default=None,
                           help="levels L of the multi-scale flow")
        group.add_argument("--depth", type=positive_int, default=None, help="flow steps K per level")
        group.add_argument("--width", type=positive_int, default=None,
                           help="channels of the coupling networks")
        group.add_argument("--flow_permutation", type=int, choices=PERMUTATIONS,
                           default=None, help="0 reverse, 1 shuffle, 2 invertible 1x1 conv, "
                                              "3 LU-decomposed 1x1 conv")
        group.add_argument("--flow_coupling", type=int, choices=COUPLINGS,
                           default=None, help="0 additive, 1 affine")
        group.add_argument("--learntop", action=argparse.BooleanOptionalAction, default=None,
                           help="learn the top prior's mean and log-sd")
        group.add_argument("--ycond", action="store_true",
                           help="class-conditional top prior (labelled data sets)")
        group.add_argument("--weight_y", type=float, default=0.0,
                           help="weight of the classifier's bits_y in the loss (needs --ycond)")
        group.add_argument("--n_bits_x", type=int, default=None, help="bit depth modelled (1..8)")
        group.add_argument("--lr", "--learning_rate", dest="learning_rate", type=float,
                           default=None, help="base learning rate (after warmup)")
        group.add_argument("--epochs_warmup", type=float, default=None,
                           help="epochs of linear learning-rate warmup")
        # aliases: the shared flag's action sets the default
        group.add_argument("--n_batch_train", dest="batch_size", type=positive_int,
                           default=argparse.SUPPRESS,
                           help="alias of -b/--batch_size (images per device and step)")
        group.add_argument("--n_batch_init", dest="init_batch_size", type=positive_int,
                           default=argparse.SUPPRESS, help="alias of -u/--init_batch_size")
        group.add_argument("--epochs", dest="max_epochs", type=positive_int,
                           default=argparse.SUPPRESS, help="alias of -x/--max_epochs")
        group.add_argument("--polyak_epochs", type=float, default=None,
                           help="beta2 = 1 - 1/(steps_per_epoch * polyak_epochs), for Adamax's "
                                "second moment and the Polyak average")
        group.add_argument("--weight_decay", type=float, default=1.0,
                           help="multiplicative: w <- weight_decay * w - step (1 = off; Adamax only)")
        group.add_argument("--gradient_checkpointing", type=int, choices=(0, 1), default=None,
                           help="recompute each flow step's activations in the backward pass")
        group.add_argument("--optimizer", choices=("adamax", "adam"), default=None,
                           help="adamax (openai/glow's default) or adam")
        group.add_argument("--beta1", type=float, default=0.9, help="first-moment decay")
        group.add_argument("--dal", type=int, choices=AUGMENTATION_LEVELS, default=None,
                           help="training-data augmentation: 0 none, 1 random shifts of up to 10%%, "
                                "2 also rotation, zoom, shear and horizontal flips (data/augment.py)")

    def add_sample_arguments(self, group):
        group.add_argument("--temperature", type=float, nargs="+", default=None,
                           help="one grid row of --n samples per temperature (default 0.7, the "
                                "openai/glow demo's); the first one is used by --seed_b, "
                                "--manipulate without --manipulate_image")
        group.add_argument("--interpolate_images", nargs=2, default=None, metavar=("A", "B"),
                           help="encode two images and decode --steps points on the line between "
                                "their latents (--label / --label_b: their classes)")
        group.add_argument("--manipulate", default=None, metavar="ATTR",
                           help="move latents along an attribute vector (name or index): "
                                "mean(z | attribute) - mean(z | not attribute) over --attr_data_set")
        group.add_argument("--alpha", type=float, nargs="+", default=None,
                           help="--manipulate: multiples of the attribute vector, one image each "
                                "(default -1 -0.5 0 0.5 1)")
        group.add_argument("--manipulate_image", default=None,
                           help="--manipulate: the image to change (default: --n samples of --seed)")
        group.add_argument("--attr_data_set", default=None,
                           help="--manipulate: labelled data set for the vectors (CelebA-HQ "
                                "attributes, or class labels one-vs-rest; default the checkpoint's)")
        group.add_argument("--attr_data_dir", default=None,
                           help="--manipulate: its location (default the checkpoint's --data_dir)")
        group.add_argument("--attr_count", type=positive_int, default=2000,
                           help="--manipulate: train images encoded for the vectors (cached as .npy "
                                "beside the checkpoint)")
        group.add_argument("--encode", nargs="+", default=None, metavar="PATH_OR_SPLIT",
                           help="save flattened latents (.npz: latents [N, D], labels) of images, "
                                "or of a split ('train'/'test') of the checkpoint's data set")
        group.add_argument("--decode", default=None, metavar="NPZ",
                           help="decode the latents of an --encode .npz to images")
