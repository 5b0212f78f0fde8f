"""BigGAN's command line: BigGAN-PyTorch's flag names and defaults (the model side is
trainer/families/biggan.py)."""
import argparse

from trainer.families.family_flags import FamilyFlags

# BigGAN-PyTorch's CIFAR-10 launch script (launch_cifar_ema.sh): batch 50, 4 D steps, both learning
# rates 2e-4, no orthogonal regularisation and no attention, EMA from iteration 1000, 500 epochs.
PAPER_PROFILE = dict(G_ch=64, D_ch=64, dim_z=128, shared_dim=128, hier=False, attn_res="0",
                     G_lr=2e-4, D_lr=2e-4, num_D_steps=4, G_ortho=0.0, ema_decay=0.9999,
                     ema_start=1000, batch_size=200, nr_gpu=1, max_epochs=500, save_interval=10,
                     sample_batch_size=10)
# A G and D small enough that `python3 train.py --model biggan` trains 4 epochs on the real32
# crops in a few minutes on 2 CPU cores. The short run needs a short EMA.
CPU_PROFILE = dict(G_ch=8, D_ch=8, dim_z=20, shared_dim=16, hier=True, attn_res="16", G_lr=2e-4,
                   D_lr=2e-4, num_D_steps=2, G_ortho=1e-4, ema_decay=0.99, ema_start=100,
                   batch_size=32, nr_gpu=1, max_epochs=4, save_interval=2, sample_batch_size=8)


class BigGANFlags(FamilyFlags):
    name = "biggan"
    profiles = {"paper": PAPER_PROFILE, "cpu": CPU_PROFILE}
    sampler_names = ("truncated",)
    default_sampler = "truncated"

    def add_arguments(self, parser):
        group = parser.add_argument_group("BigGAN (BigGAN-PyTorch flags; unset: from the data "
                                          "set's profile)")
        group.add_argument("--G_ch", type=int, default=None, help="generator channel multiplier")
        group.add_argument("--D_ch", type=int, default=None, help="discriminator channel multiplier")
        group.add_argument("--dim_z", type=int, default=None,
                           help="latent size (rounded down to a multiple of the z chunks with --hier)")
        group.add_argument("--shared_dim", type=int, default=None, help="shared class embedding size")
        group.add_argument("--hier", action=argparse.BooleanOptionalAction, default=None,
                           help="hierarchical z: a chunk of z for every G block")
        group.add_argument("--G_attn", "--attn_res", dest="attn_res", default=None,
                           help="resolutions with self-attention in G and D, joined by '_'; 0 = none")
        group.add_argument("--G_lr", type=float, default=None, help="generator Adam learning rate")
        group.add_argument("--D_lr", type=float, default=None, help="discriminator Adam learning rate")
        group.add_argument("--num_D_steps", type=int, default=None, help="D steps per G step")
        group.add_argument("--G_ortho", type=float, default=None,
                           help="orthogonal regularisation strength beta of G (0 = off)")
        group.add_argument("--ema_decay", type=float, default=None, help="decay of the EMA of G")
        group.add_argument("--ema_start", type=int, default=None,
                           help="G steps during which the EMA is a copy of G")
        group.add_argument("--num_standing_accumulations", type=int, default=16,
                           help="batches of standing batch-norm statistics for the per-save sheets")

    def add_sample_arguments(self, group):
        group.add_argument("--truncation", type=float, default=1.0,
                           help="z = truncation * TN(-2, 2) (TF-Hub convention), standing statistics "
                                "accumulated at it")
        group.add_argument("--interpolate", action="store_true",
                           help="--n rows of --steps images from (--seed, --label) to (--seed_b, "
                                "--label_b), lerping z and the one-hot y together")
        group.add_argument("--truncation_sweep", type=float, nargs="+", default=None,
                           help="one row of --n images per truncation, same base noise and classes")
        group.add_argument("--num_standing_accumulations", type=int, default=16,
                           help="batches (of biggan.model.STANDING_BATCH images) for the "
                                "standing statistics")
        group.add_argument("--standing_seed", type=int, default=0,
                           help="seed of the standing-statistics batches")
        group.add_argument("--truncation_grid", type=int, default=11,
                           help="--export: standing statistics stored for this many truncations "
                                "evenly spaced in [0, 1], linearly interpolated between them")
