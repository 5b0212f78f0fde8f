"""The PixelCNN++ network (Salimans et al. 2017, openai/pixel-cnn model.py), its configuration,
the per-image likelihood and the naive (full forward pass per pixel) sampler.

Usage:

    import tensorflow as tf
    from data.pixels import bits_per_dim, to_model_input, to_uint8
    from pixel_cnn_pp.model import PixelCNNConfig, PixelCNNPP, sample_naive

    config = PixelCNNConfig(image_shape=(32, 32, 3), nr_resnet=5, nr_filters=160)
    model = PixelCNNPP(config)                          # all variables exist now
    print(model.num_parameters())                       # 53,659,080
    x = to_model_input(uint8_images)                    # [B, 32, 32, 3] uint8 -> [-1, 1]
    model.initialize(x[:16], seed=[0, 0])               # data-dependent init, once, before training
    l = model(x)                                        # mixture parameters [B, 32, 32, 100]
    nats = model.loss(x, training=True, seed=[step, 0]) # per-image NLL [B], dropout on
    bpd = bits_per_dim(tf.reduce_mean(model.loss(x)), config.image_shape)
    images = to_uint8(sample_naive(model, num_images=4, seed=[1, 2]))

Class-conditional models (num_classes=K) take `h`, a one-hot [B, K] float matrix, in every call.
Pass `ema=` (any object with `.average(variable)`) to evaluate or sample with Polyak averages.
`model.compute_dtype = tf.bfloat16` (trainer.precision) runs the network in bfloat16; the
data-dependent init, the likelihood and the sampler stay float32.

Network (F = nr_filters, R = nr_resnet): the input gets a channel of ones (zero padding then
differs from data). The vertical stream u sees the rows above; the horizontal stream ul sees the
pixels above and to the left. The up pass runs 3 stages of R gated ResNet blocks per stream with a
stride-2 shifted convolution after the first two, pushing every output (3R+3 per stream). The down
pass runs stages of R, R+1, R+1 blocks, each consuming one pushed tensor as its skip input (u: the
u skip; ul: concat(u, ul skip)), with a stride-2 shifted transposed convolution after the first
two. The head is nin(elu(ul), 10*nr_logistic_mix) (3*nr_logistic_mix for 1-channel images).
"""
import dataclasses
import itertools
import weakref

import tensorflow as tf

from data.pixels import bits_per_dim, to_model_input, to_uint8  # noqa: F401 (part of the API)
from pixel_cnn_pp import nn

NUM_ENERGY_DISTANCE_SAMPLES = 10  # samples per image drawn by the energy-distance head
ENERGY_DISTANCE_HIDDEN = 64  # width of the energy-distance head (openai/pixel-cnn)
ENERGY_DISTANCE_NOISE_CHANNELS = 4  # channels of the U(-1, 1) noise fed to that head


@dataclasses.dataclass
class PixelCNNConfig:
    """Hyper-parameters of a PixelCNN++; the defaults are openai/pixel-cnn's CIFAR-10 model."""

    image_shape: tuple = (32, 32, 3)  # (H, W, C); H and W divisible by 4; C is 1 or 3
    nr_resnet: int = 5  # gated ResNet blocks per up stage (down stages have R, R+1, R+1)
    nr_filters: int = 160
    nr_logistic_mix: int = 10
    resnet_nonlinearity: str = "concat_elu"  # concat_elu, elu or relu
    dropout_p: float = 0.5  # element-wise dropout in every gated ResNet block while training
    num_classes: int = 0  # > 0: class-conditional on a one-hot h [B, num_classes]
    energy_distance: bool = False  # train with the energy distance instead of the likelihood

    def __post_init__(self):
        self.image_shape = tuple(int(s) for s in self.image_shape)
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape}")
        height, width, channels = self.image_shape
        if height <= 0 or width <= 0 or height % 4 or width % 4:
            raise ValueError(f"image_shape {self.image_shape}: height and width must be positive "
                             f"multiples of 4 (the network halves them twice); resize or crop")
        if channels not in (1, 3):
            raise ValueError(f"image_shape {self.image_shape}: the likelihood supports 1 or 3 "
                             f"channels, got {channels}")
        for field in ("nr_resnet", "nr_filters", "nr_logistic_mix"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if not 0.0 <= self.dropout_p < 1.0:
            raise ValueError(f"dropout_p must be in [0, 1), got {self.dropout_p}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")
        nn.get_nonlinearity(self.resnet_nonlinearity)

    def to_dict(self):
        config = dataclasses.asdict(self)
        config["image_shape"] = list(self.image_shape)
        return config

    @classmethod
    def from_dict(cls, config):
        unknown = set(config) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown PixelCNNConfig fields {sorted(unknown)}")
        return cls(**config)


class PixelCNNPP(tf.Module):
    """PixelCNN++ network; see the module docstring for the topology and a usage example.

    `compute_dtype`: the dtype the network computes in; its output (the mixture parameters, or the
    energy-distance head's samples) is always float32.

    Attributes follow the shared layer-structure contract (fast_generation walks them):
    u_init, ul_init_down, ul_init_right, up_u[s][r], up_ul[s][r], down_u_stride[s],
    down_ul_stride[s], down_u[s][r], down_ul[s][r], up_u_deconv[s], up_ul_deconv[s], out_nin
    (None with energy_distance, whose head is ed_nin_features, ed_nin_noise, ed_nin_hidden,
    ed_nin_out), and `nonlinearity` (the function used inside every gated ResNet block).
    """

    compute_dtype = tf.float32

    def __init__(self, config=None, name="pixel_cnn_pp"):
        super().__init__(name=name)
        self.config = config = config or PixelCNNConfig()
        F, R = config.nr_filters, config.nr_resnet
        channels = config.image_shape[-1]
        self.nonlinearity, _ = nn.get_nonlinearity(config.resnet_nonlinearity)

        def block(conv_class, aux_channels=0):
            return nn.GatedResnet(F, conv_class, config.resnet_nonlinearity, aux_channels,
                                  config.num_classes, config.dropout_p)

        with self.name_scope:
            # +1: the channel of ones appended to the input
            self.u_init = nn.DownShiftedConv2D(channels + 1, F, (2, 3))
            self.ul_init_down = nn.DownShiftedConv2D(channels + 1, F, (1, 3))
            self.ul_init_right = nn.DownRightShiftedConv2D(channels + 1, F, (2, 1))
            self.up_u = [[block(nn.DownShiftedConv2D) for _ in range(R)] for _ in range(3)]
            self.up_ul = [[block(nn.DownRightShiftedConv2D, aux_channels=F) for _ in range(R)]
                          for _ in range(3)]
            self.down_u_stride = [nn.DownShiftedConv2D(F, F, stride=(2, 2)) for _ in range(2)]
            self.down_ul_stride = [nn.DownRightShiftedConv2D(F, F, stride=(2, 2)) for _ in range(2)]
            self.down_u = [[block(nn.DownShiftedConv2D, aux_channels=F) for _ in range(n)]
                           for n in (R, R + 1, R + 1)]
            self.down_ul = [[block(nn.DownRightShiftedConv2D, aux_channels=2 * F) for _ in range(n)]
                            for n in (R, R + 1, R + 1)]
            self.up_u_deconv = [nn.DownShiftedDeconv2D(F, F, stride=(2, 2)) for _ in range(2)]
            self.up_ul_deconv = [nn.DownRightShiftedDeconv2D(F, F, stride=(2, 2)) for _ in range(2)]
            if config.energy_distance:
                hidden = ENERGY_DISTANCE_HIDDEN
                self.out_nin = None
                self.ed_nin_features = nn.NIN(F, hidden)
                self.ed_nin_noise = nn.NIN(ENERGY_DISTANCE_NOISE_CHANNELS, hidden)
                self.ed_nin_hidden = nn.NIN(2 * hidden, hidden)
                self.ed_nin_out = nn.NIN(2 * hidden, channels, init_scale=0.1)
            else:
                per_channel = 10 if channels == 3 else 3
                self.out_nin = nn.NIN(F, per_channel * config.nr_logistic_mix)

    # -- public API ------------------------------------------------------------------------------

    def __call__(self, x, h=None, training=False, ema=None, seed=None):
        """Mixture parameters l [B, H, W, 10M] (3M for 1 channel) for images x [B, H, W, C] in
        [-1, 1]. With energy_distance, one sample [B, H, W, C] from the head instead, its noise
        drawn from `seed` ([0, 0] when None). training=True applies dropout drawn from `seed`
        (int [2]); `ema` reads Polyak averages."""
        output = self._forward(x, h, training=training, ema=ema, seed=seed)
        return output[0] if self.config.energy_distance else output

    def initialize(self, x, h=None, seed=None):
        """Data-dependent init on the batch x: layer by layer, from input to head, sets g and b so
        each weight-normalised layer's output has per-channel mean 0 and std init_scale (0.1 for
        gate convs), feeding the re-normalised output onward. Dropout is on, as in the original's
        init pass, drawn from `seed` (default [0, 0])."""
        self._forward(x, h, training=True, seed=[0, 0] if seed is None else seed, init=True)

    def loss(self, x, h=None, training=False, ema=None, seed=None):
        """Per-image loss [B] in nats: the negative log-likelihood of x (8-bit values mapped to
        [-1, 1]), or with energy_distance the energy distance to 10 head samples."""
        output = self._forward(x, h, training=training, ema=ema, seed=seed)
        if self.config.energy_distance:
            return nn.energy_distance_loss(x, output)
        if self.config.image_shape[-1] == 1:
            return nn.discretized_mix_logistic_loss_1d(x, output, sum_all=False)
        return nn.discretized_mix_logistic_loss(x, output, sum_all=False)

    def sample_from_output(self, l, seed):
        """Draws images from mixture parameters l with the variant matching the channel count."""
        if self.config.image_shape[-1] == 1:
            return nn.sample_from_discretized_mix_logistic_1d(l, self.config.nr_logistic_mix, seed)
        return nn.sample_from_discretized_mix_logistic(l, self.config.nr_logistic_mix, seed)

    def num_parameters(self):
        return sum(int(v.shape.num_elements()) for v in self.trainable_variables)

    # -- network ---------------------------------------------------------------------------------

    def _check_inputs(self, x, h):
        expected = self.config.image_shape
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"input images have shape {tuple(x.shape)}, the model expects "
                             f"[B, {', '.join(map(str, expected))}]")
        if self.config.num_classes and h is None:
            raise ValueError(f"class-conditional model (num_classes={self.config.num_classes}) "
                             f"needs a one-hot h [B, {self.config.num_classes}]")
        if not self.config.num_classes and h is not None:
            raise ValueError("unconditional model (num_classes=0) got a class input h")
        if h is not None and h.shape[-1] != self.config.num_classes:
            raise ValueError(f"h has shape {tuple(h.shape)}, expected [B, {self.config.num_classes}]")

    def _forward(self, x, h=None, training=False, ema=None, seed=None, init=False):
        """Mixture parameters, or with energy_distance all head samples [S, B, H, W, C]."""
        x = tf.convert_to_tensor(x, tf.float32)
        h = None if h is None else tf.convert_to_tensor(h, tf.float32)
        self._check_inputs(x, h)
        if training and seed is None:
            raise ValueError("training=True needs a seed (int [2]) for the dropout masks")
        if training:
            dropout_base = nn.fold_seed(seed, 0)
            dropout_seeds = (nn.fold_seed(dropout_base, k) for k in itertools.count())
        else:
            dropout_seeds = itertools.repeat(None)
        kwargs = dict(h=h, ema=ema, init=init)

        # the data-dependent init runs in float32 whatever the compute dtype
        x_in = x if init else tf.cast(x, self.compute_dtype)
        # up pass: every output is pushed, to be consumed as a skip in the down pass
        x_pad = tf.concat([x_in, tf.ones_like(x_in[..., :1])], axis=-1)
        u_list = [nn.down_shift(self.u_init(x_pad, ema=ema, init=init))]
        ul_list = [nn.down_shift(self.ul_init_down(x_pad, ema=ema, init=init))
                   + nn.right_shift(self.ul_init_right(x_pad, ema=ema, init=init))]
        for stage in range(3):
            for u_block, ul_block in zip(self.up_u[stage], self.up_ul[stage]):
                u_list.append(u_block(u_list[-1], dropout_seed=next(dropout_seeds), **kwargs))
                ul_list.append(ul_block(ul_list[-1], a=u_list[-1], dropout_seed=next(dropout_seeds),
                                        **kwargs))
            if stage < 2:
                u_list.append(self.down_u_stride[stage](u_list[-1], ema=ema, init=init))
                ul_list.append(self.down_ul_stride[stage](ul_list[-1], ema=ema, init=init))

        # down pass
        u, ul = u_list.pop(), ul_list.pop()
        for stage in range(3):
            for u_block, ul_block in zip(self.down_u[stage], self.down_ul[stage]):
                u = u_block(u, a=u_list.pop(), dropout_seed=next(dropout_seeds), **kwargs)
                ul = ul_block(ul, a=tf.concat([u, ul_list.pop()], axis=-1),
                              dropout_seed=next(dropout_seeds), **kwargs)
            if stage < 2:
                u = self.up_u_deconv[stage](u, ema=ema, init=init)
                ul = self.up_ul_deconv[stage](ul, ema=ema, init=init)
        assert not u_list and not ul_list, "every pushed tensor is consumed exactly once"

        if self.config.energy_distance:
            samples = self._energy_distance_head(ul, ema, init, nn.fold_seed(
                [0, 0] if seed is None else seed, 1))
        else:
            samples = self.out_nin(tf.nn.elu(ul), ema=ema, init=init)
        return tf.cast(samples, tf.float32)

    def _energy_distance_head(self, ul, ema, init, noise_seed):
        """S samples [S, B, H, W, C] in (-1, 1): features tiled S times plus a projection of
        U(-1, 1) noise, two concat_elu NINs, tanh (openai/pixel-cnn `-ed`)."""
        num = NUM_ENERGY_DISTANCE_SAMPLES
        features = tf.tile(self.ed_nin_features(tf.nn.elu(ul), ema=ema, init=init), [num, 1, 1, 1])
        noise_shape = tf.concat([tf.shape(features)[:-1], [ENERGY_DISTANCE_NOISE_CHANNELS]], axis=0)
        noise = tf.random.stateless_uniform(noise_shape, noise_seed, minval=-1.0, maxval=1.0)
        f = features + self.ed_nin_noise(tf.cast(noise, features.dtype), ema=ema, init=init)
        f = self.ed_nin_hidden(nn.concat_elu(f), ema=ema, init=init)
        samples = tf.tanh(self.ed_nin_out(nn.concat_elu(f), ema=ema, init=init))
        return tf.reshape(samples, tf.concat([[num, -1], tf.shape(samples)[1:]], axis=0))


def sample_naive(model, num_images, seed, h=None, ema=None):
    """Samples num_images images [N, H, W, C] in [-1, 1] in raster order, one full forward pass
    per pixel (openai/pixel-cnn's sampler). Pixel (i, j) is drawn from the network output at
    (i, j) with seed nn.pixel_seed(seed, i, j), so a seed always gives the same images; the
    unrounded float sample is fed back (with energy_distance: the head's sample at (i, j), its
    noise drawn from that seed). `h`: one-hot [N, K] for a class-conditional model.
    The loop is one tf.function (a tf.while_loop over pixels), traced once per model,
    num_images, ema and conditioning, and reused for every seed and h."""
    height, width, channels = model.config.image_shape
    h = None if h is None else tf.convert_to_tensor(h, tf.float32)
    model._check_inputs(tf.zeros([num_images, height, width, channels]), h)
    if h is not None and h.shape[0] != num_images:
        raise ValueError(f"h has {h.shape[0]} rows, expected one per image ({num_images})")
    samplers = _NAIVE_SAMPLERS.setdefault(model, {})
    key = (num_images, ema, h is not None, model.compute_dtype)
    if key not in samplers:
        samplers[key] = _build_naive_sampler(model, num_images, ema)
    return samplers[key](nn.as_seed(seed), h)


# model -> {(num_images, ema, conditional, compute dtype): fn}
_NAIVE_SAMPLERS = weakref.WeakKeyDictionary()


def _build_naive_sampler(model, num_images, ema):
    height, width, channels = model.config.image_shape

    def sample_pixel(x, h, seed, row, col):
        noise_seed = nn.pixel_seed(seed, row, col)
        if model.config.energy_distance:
            return model(x, h, ema=ema, seed=noise_seed)[:, row:row + 1, col:col + 1, :]
        l = model(x, h, ema=ema)
        return model.sample_from_output(l[:, row:row + 1, col:col + 1, :], noise_seed)

    @tf.function
    def run(seed, h):
        def body(index, x):
            row, col = index // width, index % width
            at_pixel = tf.reshape(tf.one_hot(index, height * width, on_value=True, off_value=False),
                                  [1, height, width, 1])
            return index + 1, tf.where(at_pixel, sample_pixel(x, h, seed, row, col), x)

        _, images = tf.while_loop(lambda index, _: index < height * width, body,
                                  (tf.constant(0), tf.zeros([num_images, height, width, channels])))
        return images

    return run
