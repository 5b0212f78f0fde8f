"""BigGAN around `biggan` (its BigGAN-PyTorch flag names and defaults are in biggan_flags.py): its
training step on the shared loop (trainer.loop), and sample.py's truncation / interpolation /
sweep sheets.

One step (BigGAN-PyTorch train_fns.GAN_training_function): num_D_steps D updates, each on its own
1/num_D_steps of the real batch, then one G update; Adam with beta1 = 0 and separate G/D learning
rates; then the EMA of G, a copy of G until ema_start G steps are done. --nr_gpu N trains
data-parallel: the noise and fake classes of every D and G step are drawn once for the global
batch from the step seed, each replica takes its contiguous slice of the real and fake images and
computes its losses (and its share of the ortho penalty) scaled by 1/N, gradients are summed over
the replicas, and batch norm in G is cross-replica, so the step equals the single-device step on
the global batch. Sampling uses the EMA generator with standing statistics (biggan.model).
"""
import numpy as np
import tensorflow as tf

from biggan import model as bg
from data.pixels import to_model_input, to_uint8
from trainer import export, optim
from trainer import images as image_files
from trainer.families.base import Family, SampleError
from trainer.families.biggan_flags import BigGANFlags


def resolutions(text):
    """BigGAN-PyTorch's --G_attn syntax: resolutions joined by '_' ('16_32'); '0' means none."""
    try:
        values = tuple(int(part) for part in text.split("_"))
    except ValueError:
        raise ValueError(f"--G_attn: expected resolutions joined by '_' (e.g. 16_32) or 0, "
                         f"got {text!r}") from None
    return () if values == (0,) else values


def check_truncation(value, flag="--truncation"):
    if not 0.0 <= value <= 1.0:
        raise SampleError(f"{flag} {value}: truncation must lie in [0, 1]")


def discriminator_replica_step(run, z, y_fake, x, y, share):
    """One replica's D hinge loss terms on its slice of a D step, each divided by the number of
    replicas (summed over them: the global means), and their gradient for D."""
    model, replicas = run.model, run.replicas
    z, y_fake, x, y = (replicas.slice(t, share) for t in (z, y_fake, x, y))
    count = replicas.strategy.num_replicas_in_sync
    fake = model.G(z, y_fake, training=True)
    with tf.GradientTape() as tape:
        logits = model.D(tf.concat([fake, x], axis=0), tf.concat([y_fake, y], axis=0),
                         training=True)
        real_loss, fake_loss = bg.discriminator_hinge_loss(logits[share:], logits[:share])
        real_loss, fake_loss = real_loss / count, fake_loss / count
        scaled_loss = run.loss_scale.scaled(real_loss + fake_loss)
    grads, nonfinite = run.loss_scale.unscaled(tape.gradient(scaled_loss,
                                                             model.D.trainable_variables))
    return (real_loss, fake_loss, nonfinite), grads


def generator_replica_step(run, z, y_fake, share):
    """One replica's G hinge loss on its slice of the G step's fakes and its share of the
    orthogonal regulariser, each divided by the number of replicas, and their gradient for G."""
    model, replicas = run.model, run.replicas
    z, y_fake = replicas.slice(z, share), replicas.slice(y_fake, share)
    count = replicas.strategy.num_replicas_in_sync
    with tf.GradientTape() as tape:
        fake = model.G(z, y_fake, training=True)
        G_loss = bg.generator_hinge_loss(model.D(fake, y_fake, training=True)) / count
        G_ortho = model.ortho_loss() if model.config.G_ortho > 0 else tf.constant(0.0)
        G_ortho = G_ortho / count
        scaled_loss = run.loss_scale.scaled(G_loss + G_ortho)
    grads, nonfinite = run.loss_scale.unscaled(tape.gradient(scaled_loss,
                                                             model.G.trainable_variables))
    return (G_loss, G_ortho, nonfinite), grads


class BigGANFamily(BigGANFlags, Family):
    has_likelihood = False
    multi_process = False
    learning_rate_flags = "--G_lr/--D_lr"
    sample_file_name = "classes"
    samplers = {"truncated": bg.sample}  # truncation 1, standing statistics from seed 0

    def model_config(self, args, info):
        if not info.num_classes:
            raise ValueError(f"BigGAN is class-conditional and data set {info.name!r} has no labels; "
                             f"use a labelled set (real32, cifar, imagenet_npz, ...)")
        if args.batch_size % args.num_D_steps:
            raise ValueError(f"--batch_size {args.batch_size} (per device) must be divisible by "
                             f"--num_D_steps {args.num_D_steps} (each D step takes its share of every "
                             f"device's real batch)")
        config = bg.BigGANConfig(
            image_shape=info.image_shape, num_classes=info.num_classes, dim_z=args.dim_z,
            shared_dim=args.shared_dim, G_ch=args.G_ch, D_ch=args.D_ch,
            attn_res=resolutions(args.attn_res),
            hier=args.hier, G_lr=args.G_lr, D_lr=args.D_lr, num_D_steps=args.num_D_steps,
            G_ortho=args.G_ortho, ema_decay=args.ema_decay, ema_start=args.ema_start, seed=args.seed)
        return config.to_dict()


    def build(self, config):
        return bg.BigGAN(bg.BigGANConfig.from_dict(config))

    def conditional(self, model):
        return True

    def averaged_variables(self, model):
        return model.G.averaged_variables()

    def ema_decay(self, args, steps_per_epoch):
        return args.ema_decay

    def make_optimizers(self, args, model, steps_per_epoch):
        config = model.config
        beta = dict(beta1=config.adam_beta1, beta2=config.adam_beta2, epsilon=config.adam_eps)
        return {"G_optimizer": optim.Adam(model.G.trainable_variables, config.G_lr,
                                          name="G_adam", **beta),
                "D_optimizer": optim.Adam(model.D.trainable_variables, config.D_lr,
                                          name="D_adam", **beta)}

    def iterations(self, optimizers):
        """G steps."""
        return optimizers["G_optimizer"].iterations

    def learning_rates(self, optimizers, step):
        return {}

    def train_step(self, run, images, labels, step_seed):
        """num_D_steps D updates, then one G update and the EMA step, on the global batch (one
        process): D step i uses real images i*B/n..(i+1)*B/n, each fake batch has B/n images with
        uniformly random classes, z and classes drawn from `step_seed`. Returns the global mean
        losses (and gradient norms) of the last D step and of the G step."""
        model, config, replicas = run.model, run.model.config, run.replicas
        x = to_model_input(images)
        y = bg.as_one_hot(labels, config.num_classes)
        steps = config.num_D_steps
        batch = replicas.global_batch // steps  # one D step's global batch
        share = batch // replicas.strategy.num_replicas_in_sync  # one replica's part of it
        seeds = tf.random.experimental.stateless_split(tf.cast(step_seed, tf.int64),
                                                       2 * (steps + 1))
        D, G = run.optimizers["D_optimizer"], run.optimizers["G_optimizer"]
        for i in range(steps):
            z = tf.random.stateless_normal([batch, config.dim_z], seeds[2 * i])
            y_fake = bg.random_labels(batch, config.num_classes, seeds[2 * i + 1])
            real = (x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
            (D_loss_real, D_loss_fake, nonfinite), grads = replicas.sum_gradients(
                lambda *a: discriminator_replica_step(run, *a), (z, y_fake, *real, share),
                model.D.trainable_variables)
            run.loss_scale.apply_if_finite(
                nonfinite, lambda g=grads: D.apply(g, model.D.trainable_variables), D.iterations)
            D_grad_norm = tf.linalg.global_norm(grads)
        z = tf.random.stateless_normal([batch, config.dim_z], seeds[-2])
        y_fake = bg.random_labels(batch, config.num_classes, seeds[-1])
        (G_loss, G_ortho, nonfinite), grads = replicas.sum_gradients(
            lambda *a: generator_replica_step(run, *a), (z, y_fake, share),
            model.G.trainable_variables)

        def apply_G():
            G.apply(grads, model.G.trainable_variables)
            # BigGAN-PyTorch utils.ema: decay 0 (a copy of G) before ema_start G steps
            tf.cond(G.iterations >= config.ema_start, run.ema.apply, run.ema.copy_variables)

        run.loss_scale.apply_if_finite(nonfinite, apply_G, G.iterations)
        return {"D_loss": D_loss_real + D_loss_fake, "D_loss_real": D_loss_real,
                "D_loss_fake": D_loss_fake, "G_loss": G_loss, "G_ortho": G_ortho,
                "D_grad_norm": D_grad_norm, "G_grad_norm": tf.linalg.global_norm(grads)}

    def training_samples(self, model, ema, args, seed):
        """A class sheet: every class x sample_batch_size images, EMA generator, truncation 1."""
        return bg.class_sheet(model, args.sample_batch_size, seed, ema,
                              num_standing_batches=args.num_standing_accumulations)

    def sheet_row_labels(self, model, args):
        return [f"class {k}" for k in range(model.config.num_classes)]

    def output_name(self, args):
        if args.interpolate:
            return f"interpolation_seed{args.seed}_seed{args.seed_b}"
        if args.truncation_sweep:
            return f"truncation_sweep_seed{args.seed}"
        return f"sample_{args.sampler}_seed{args.seed}_truncation{args.truncation:g}"

    # -- sample.py -----------------------------------------------------------------------------

    def sample_main(self, args, model, ema, stored, prefix):
        """A plain grid, an interpolation sheet or a truncation sweep (PNG + raw npz)."""
        num_classes = model.config.num_classes
        for label in (args.label, args.label_b):
            if label is not None and not 0 <= label < num_classes:
                raise SampleError(f"label {label}: the model has classes 0..{num_classes - 1}")
        if args.num_standing_accumulations < 1:
            raise SampleError("--num_standing_accumulations must be >= 1")
        if args.interpolate and args.truncation_sweep:
            raise SampleError("--interpolate and --truncation_sweep make different sheets; pass "
                              "one of them")
        standing = dict(num_standing_batches=args.num_standing_accumulations,
                        standing_seed=args.standing_seed)
        check_truncation(args.truncation)
        if args.interpolate:
            label_a = 0 if args.label is None else args.label
            seed_b = args.seed if args.seed_b is None else args.seed_b
            label_b = label_a if args.label_b is None else args.label_b
            if (seed_b, label_b) == (args.seed, label_a):
                raise SampleError("--interpolate: both ends are the same; give --seed_b and/or "
                                  "--label_b")
            images = to_uint8(bg.interpolation_sheet(model, args.seed, label_a, seed_b, label_b,
                                                     args.n, args.steps, args.truncation, ema,
                                                     **standing)).numpy()
            image_files.save_samples(prefix, images, min_width=args.sheet_width)
        elif args.truncation_sweep:
            for psi in args.truncation_sweep:
                check_truncation(psi, "--truncation_sweep")
            labels = None if args.label is None else np.full([args.n], args.label)
            images = to_uint8(bg.truncation_sweep(model, args.truncation_sweep, args.n,
                                                  args.seed, labels, ema, **standing)).numpy()
            sweep = np.float32(args.truncation_sweep)
            image_files.save_samples(
                prefix, images, min_width=args.sheet_width,
                row_labels=[f"truncation {psi:g}" for psi in args.truncation_sweep],
                truncations=np.repeat(sweep, args.n).reshape(len(sweep), args.n))
        else:
            labels = None if args.label is None else np.full([args.n], args.label)
            images = bg.sample(model, args.n, args.seed, labels, ema, args.truncation, **standing)
            metadata = {} if labels is None else {"labels": labels.astype(np.int32)}
            image_files.save_samples(prefix, images, min_width=args.sheet_width, **metadata)
        return [prefix + ".png", prefix + ".npz"]

    def export_module(self, model, ema, args):
        if args.truncation_grid < 2:
            raise export.ExportError(f"--truncation_grid {args.truncation_grid}: need at least "
                                     f"2 truncations (0 and 1)")
        return export.BigGANModule(model, ema, args.truncation_grid,
                                   args.num_standing_accumulations, args.standing_seed)


FAMILY = BigGANFamily()
