"""The cached (fast) PixelCNN++ sampler and its teacher-forced check.

`sample_fast` draws the images of `pixel_cnn_pp.model.sample_naive` for the same seed (pixel
(i, j) takes its noise from `pixel_seed(seed, i, j)`, drawn with the same shapes; in float32 the
uint8 images agree up to rare +-1 rounding flips, README), but evaluates
each layer only where the new pixel changes it, with the cached layers of `fast_nn`:

    for each row i:      the vertical stream (u) for row i, at every resolution whose row it is
                         (i % 2**level == 0), from image row i - 1
      for each column j: the horizontal stream (ul) and the head for pixel (i, j), at every
                         resolution whose pixel it is, from pixel (i, j - 1); sample pixel (i, j)
      after the row:     roll the horizontal caches of the resolutions the row belongs to

The whole loop is one tf.function (tf.while_loop over rows and columns, caches as loop-carried
tensors), traced once per model and EMA object (the batch size and the number of images are
tensors, so neither a new count nor a last, smaller batch traces it again).

Zero padding: the network shifts its first convolutions' outputs down (and right) by inserting
exact zeros; the cached input layers see the previous row (pixel) instead, so their output at row 0
(column 0) would be the bare bias, and is replaced by zeros.
"""
import weakref

import tensorflow as tf

from data.progress import progress
from fast_generation import fast_nn
from pixel_cnn_pp import nn
from pixel_cnn_pp.model import ENERGY_DISTANCE_NOISE_CHANNELS, NUM_ENERGY_DISTANCE_SAMPLES


class _Level:
    """The cached layers of one resolution (level 0: full, level k: 1/2**k) of both streams."""

    def __init__(self, model, level, ema, h):
        num_levels = len(model.up_u)
        width = model.config.image_shape[1] // 2 ** level
        every = 2 ** level  # a pixel of this level every `every` full-resolution rows / columns
        down = num_levels - 1 - level  # the down pass runs from the coarsest level
        nonlinearity = model.nonlinearity

        dtype = model.compute_dtype

        def blocks(row_blocks, cached_class):
            return [cached_class(block, width, ema, h, nonlinearity, every, dtype)
                    for block in row_blocks]

        self.up_u = blocks(model.up_u[level], fast_nn.RowGatedResnet)
        self.up_ul = blocks(model.up_ul[level], fast_nn.PixelGatedResnet)
        self.down_u = blocks(model.down_u[down], fast_nn.RowGatedResnet)
        self.down_ul = blocks(model.down_ul[down], fast_nn.PixelGatedResnet)
        self.coarsest = level == num_levels - 1
        if not self.coarsest:
            # stride-2 convolutions into level + 1, transposed convolutions back from it
            self.stride_u = fast_nn.RowConv(model.down_u_stride[level], width, ema, every, dtype)
            self.stride_ul = fast_nn.PixelConv(model.down_ul_stride[level], width, ema, every,
                                               dtype)
            self.deconv_u = fast_nn.RowDeconv(model.up_u_deconv[down - 1], width // 2, ema,
                                              2 * every, dtype)
            self.deconv_ul = fast_nn.PixelDeconv(model.up_ul_deconv[down - 1], width // 2, ema,
                                                 2 * every, dtype)
        self.every = every

    def initial_vertical(self, batch):
        """This level's vertical caches for the first row."""
        vertical = {"up": [b.initial_cache(batch) for b in self.up_u],
                    "down": [b.initial_cache(batch) for b in self.down_u]}
        if not self.coarsest:
            vertical.update(stride=self.stride_u.initial_cache(batch),
                            deconv=self.deconv_u.initial_cache(batch))
        return vertical

    def initial_horizontal(self, batch):
        """This level's horizontal caches for the first row as (finished, current), split as in
        fast_nn.PixelConv: `finished` is fixed during a row."""
        finished, current = {}, {}
        for key, layers in (("up", self.up_ul), ("down", self.down_ul)):
            finished[key], current[key] = map(list, zip(*(b.initial_cache(batch) for b in layers)))
        if not self.coarsest:
            finished["stride"], current["stride"] = self.stride_ul.initial_cache(batch)
            current["deconv"] = self.deconv_ul.initial_cache(batch)
        return finished, current

    def end_row(self, finished, current):
        """Rolls the horizontal convolution caches after the last pixel of one of this level's rows
        (the transposed convolutions' blocks need no roll). Returns (finished, current)."""
        finished, current = dict(finished), dict(current)
        for key, layers in (("up", self.up_ul), ("down", self.down_ul)):
            finished[key], current[key] = map(list, zip(*(
                b.end_row(f, c) for b, f, c in zip(layers, finished[key], current[key]))))
        if not self.coarsest:
            finished["stride"], current["stride"] = self.stride_ul.end_row(finished["stride"],
                                                                           current["stride"])
        return finished, current


def _zero_at_start(value, index):
    """value, or exact zeros where index == 0 (the zero row/column the network's shifts insert)."""
    return tf.where(index > 0, value, tf.zeros_like(value))


class CachedPixelCNN:
    """A PixelCNN++ `model` as cached layers: `vertical_row` runs the u stream for one row,
    `pixel` the ul stream for one pixel, `mixture_params` / `sample_pixel` the head. It reads the
    weights (`layer.weights(ema)`) and the class bias h @ hw once, when built (inside the sampling
    tf.function, so they are graph tensors there). `batch`: int or scalar tensor."""

    def __init__(self, model, batch, ema=None, h=None):
        self.model = model
        self.batch = batch
        self.dtype = dtype = model.compute_dtype
        self.height, self.width, self.channels = model.config.image_shape
        self.levels = [_Level(model, level, ema, h) for level in range(len(model.up_u))]
        # input layer: u0 = down_shift(u_init(x)); ul0 = down_shift(ul_init_down(x)) +
        # right_shift(ul_init_right(x)); fed the previous row / pixel (the shift), see module doc
        self.u_init = fast_nn.RowConv(model.u_init, self.width, ema, 1, dtype)
        self.ul_init_down = fast_nn.RowConv(model.ul_init_down, self.width, ema, 1, dtype)
        self.ul_init_right = fast_nn.PixelConv(model.ul_init_right, self.width, ema, 1, dtype)
        if model.config.energy_distance:
            self.head = [fast_nn.NIN(getattr(model, name), ema, dtype) for name in
                         ("ed_nin_features", "ed_nin_noise", "ed_nin_hidden", "ed_nin_out")]
        else:
            self.head = fast_nn.NIN(model.out_nin, ema, dtype)

    def initial_vertical(self):
        """The vertical caches for the first row (`vertical_row`'s state), a list over levels."""
        vertical = [level.initial_vertical(self.batch) for level in self.levels]
        vertical[0] = dict(vertical[0], u_init=self.u_init.initial_cache(self.batch),
                           ul_init_down=self.ul_init_down.initial_cache(self.batch))
        return vertical

    def initial_horizontal(self):
        """The horizontal caches for the first row (`pixel`'s state) as (finished, current), each
        a list over levels; `finished` (the rows above) changes only between rows."""
        finished, current = map(list, zip(*(level.initial_horizontal(self.batch)
                                            for level in self.levels)))
        ul_init_right = self.ul_init_right.initial_cache(self.batch)
        finished[0] = dict(finished[0], ul_init_right=ul_init_right[0])
        current[0] = dict(current[0], ul_init_right=ul_init_right[1])
        return finished, current

    # -- vertical stream ---------------------------------------------------------------------------

    def vertical_row(self, vertical, row, previous_row):
        """Runs the u stream for full-resolution row `row` given image row row - 1
        (`previous_row` [B, W, C+1] with its ones channel; zeros for row 0). Returns the updated
        vertical state and `rows`, per level the u rows the horizontal stream reads:
        {'ul_init': [B, W, F] (level 0), 'up': [...], 'down': [...]}."""
        state = dict(vertical[0])
        previous_row = tf.cast(previous_row, self.dtype)
        state["u_init"] = self.u_init.push(state["u_init"], previous_row)
        state["ul_init_down"] = self.ul_init_down.push(state["ul_init_down"], previous_row)
        u = _zero_at_start(self.u_init.run(state["u_init"]), row)
        ul_init = _zero_at_start(self.ul_init_down.run(state["ul_init_down"]), row)
        vertical, rows, _ = self._vertical_level(0, u, [state] + list(vertical[1:]), row)
        rows[0]["ul_init"] = ul_init
        return vertical, rows

    def _vertical_level(self, index, u, vertical, row):
        """u stream of level `index` for its current row (the caller runs it only on rows that
        belong to it), u its input row. Returns (vertical state, rows, output row of the level)."""
        level, state = self.levels[index], dict(vertical[index])
        rows = {"up": [], "down": []}
        skips = [u]
        state["up"] = []
        for block, cache in zip(level.up_u, vertical[index]["up"]):
            cache, u = block(cache, u)
            state["up"].append(cache)
            rows["up"].append(u)
            skips.append(u)
        deeper_state = list(vertical[index + 1:])
        deeper_rows = [self._zero_rows(i) for i in range(index + 1, len(self.levels))]
        if level.coarsest:
            u = skips.pop()
        else:
            state["stride"] = level.stride_u.push(state["stride"], u)

            def descend():
                new_vertical, new_rows, coarse_u = self._vertical_level(
                    index + 1, level.stride_u.run(state["stride"]),
                    vertical[:index + 1] + deeper_state, row)
                return (new_vertical[index + 1:], new_rows[index + 1:],
                        level.deconv_u.push(state["deconv"], coarse_u))

            deeper_state, deeper_rows, state["deconv"] = tf.cond(
                level.stride_u.should_run(row), descend,
                lambda: (deeper_state, deeper_rows, state["deconv"]))
            u = level.deconv_u.run(state["deconv"], row)
        state["down"] = []
        for block, cache in zip(level.down_u, vertical[index]["down"]):
            cache, u = block(cache, u, a=skips.pop())
            state["down"].append(cache)
            rows["down"].append(u)
        return (list(vertical[:index]) + [state] + list(deeper_state),
                [None] * index + [rows] + list(deeper_rows), u)

    def _zero_rows(self, index):
        """Placeholder rows of level `index` on full-resolution rows that are not its own."""
        level = self.levels[index]
        shape = [self.batch, self.width // level.every, self.model.config.nr_filters]
        return {"up": [tf.zeros(shape, self.dtype) for _ in level.up_u],
                "down": [tf.zeros(shape, self.dtype) for _ in level.down_u]}

    # -- horizontal stream -------------------------------------------------------------------------

    def pixel(self, finished, current, rows, row, col, previous_pixel):
        """Runs the ul stream for full-resolution pixel (row, col) given pixel (row, col - 1)
        (`previous_pixel` [B, C+1]; zeros for column 0). Returns the updated `current` caches and
        the last ul [B, F] (the head's input); `finished` is read only."""
        state = dict(current[0])
        previous_pixel = tf.cast(previous_pixel, self.dtype)
        state["ul_init_right"] = self.ul_init_right.push(state["ul_init_right"], col,
                                                         previous_pixel)
        right = self.ul_init_right.run(finished[0]["ul_init_right"], state["ul_init_right"], col)
        ul = tf.gather(rows[0]["ul_init"], col, axis=1) + _zero_at_start(right, col)
        return self._horizontal_level(0, ul, finished, [state] + list(current[1:]), rows, row, col)

    def _horizontal_level(self, index, ul, finished, current, rows, row, col):
        """ul stream of level `index` for its pixel at full-resolution step (row, col) (the caller
        runs it only on steps that belong to it), ul its input. Returns (current caches, output
        pixel of the level)."""
        level, fixed, state = self.levels[index], finished[index], dict(current[index])
        level_col = col // level.every
        skips = [ul]
        state["up"] = []
        for block, block_finished, cache, u_row in zip(level.up_ul, fixed["up"],
                                                       current[index]["up"], rows[index]["up"]):
            cache, ul = block(block_finished, cache, col, ul, a=tf.gather(u_row, level_col, axis=1))
            state["up"].append(cache)
            skips.append(ul)
        deeper_state = list(current[index + 1:])
        if level.coarsest:
            ul = skips.pop()
        else:
            state["stride"] = level.stride_ul.push(state["stride"], col, ul)

            def descend():
                new_current, coarse_ul = self._horizontal_level(
                    index + 1, level.stride_ul.run(fixed["stride"], state["stride"], col),
                    finished, current[:index + 1] + deeper_state, rows, row, col)
                return (new_current[index + 1:],
                        level.deconv_ul.push(state["deconv"], col, coarse_ul))

            deeper_state, state["deconv"] = tf.cond(
                level.stride_ul.should_run(row, col), descend,
                lambda: (deeper_state, state["deconv"]))
            ul = level.deconv_ul.run(state["deconv"], row, col)
        state["down"] = []
        for block, block_finished, cache, u_row in zip(level.down_ul, fixed["down"],
                                                       current[index]["down"],
                                                       rows[index]["down"]):
            a = tf.concat([tf.gather(u_row, level_col, axis=1), skips.pop()], axis=-1)
            cache, ul = block(block_finished, cache, col, ul, a=a)
            state["down"].append(cache)
        return list(current[:index]) + [state] + list(deeper_state), ul

    def end_row(self, finished, current, row):
        """Rolls the horizontal caches of every level that `row` belongs to. Returns the next
        row's (finished, current)."""
        new_finished, new_current = [], []
        for index, level in enumerate(self.levels):
            if index == 0:
                fixed, state = level.end_row(finished[0], current[0])
                fixed["ul_init_right"], state["ul_init_right"] = self.ul_init_right.end_row(
                    finished[0]["ul_init_right"], current[0]["ul_init_right"])
            else:
                fixed, state = tf.cond(
                    row % level.every == 0,
                    lambda l=level, f=finished[index], c=current[index]: l.end_row(f, c),
                    lambda f=finished[index], c=current[index]: (f, c))
            new_finished.append(fixed)
            new_current.append(state)
        return new_finished, new_current

    # -- head ------------------------------------------------------------------------------------

    def mixture_params(self, ul):
        """The head nin(elu(ul)): float32 mixture parameters [B, 10M] (3M for 1 channel) of one
        pixel."""
        return tf.cast(self.head(tf.nn.elu(ul)), tf.float32)

    def energy_distance_sample(self, ul, noise):
        """The energy-distance head for one pixel (one of its samples): features plus a projection
        of the U(-1, 1) noise [B, 4], two concat_elu NINs, tanh."""
        features, noise_nin, hidden, out = self.head
        f = features(tf.nn.elu(ul)) + noise_nin(tf.cast(noise, self.dtype))
        return tf.cast(tf.tanh(out(nn.concat_elu(hidden(nn.concat_elu(f))))), tf.float32)

    def sample_pixel(self, ul, seed, row, col, offset, total):
        """Pixel (row, col) [B, C] of images offset .. offset + B - 1 of a sampling call for
        `total` images. The noise is drawn as sample_naive draws it for all `total` images at once
        (same seed, same shapes) and this batch's rows are taken, so every image is the same
        whatever the batch size."""
        noise_seed = nn.pixel_seed(seed, row, col)
        rows = offset + tf.range(self.batch)
        if self.model.config.energy_distance:
            # the head's noise for every sample, image and pixel; sample 0 of image n is row n
            shape = [NUM_ENERGY_DISTANCE_SAMPLES * total, self.height, self.width,
                     ENERGY_DISTANCE_NOISE_CHANNELS]
            noise = tf.random.stateless_uniform(shape, nn.fold_seed(noise_seed, 1), -1.0, 1.0)
            return self.energy_distance_sample(ul, tf.gather(noise[:, row, col], rows))
        params = self.mixture_params(ul)
        params = tf.scatter_nd(rows[:, None], params, [total, params.shape[-1]])
        pixels = self.model.sample_from_output(params[:, None, None, :], noise_seed)[:, 0, 0]
        return tf.gather(pixels, rows)


def _with_ones(x, present):
    """x with the channel of ones appended (the network's input), or all zeros (padding)."""
    x = tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)
    return tf.where(present, x, tf.zeros_like(x))


def _build_generator(model, ema, teacher_forced):
    """A tf.function(seed, h, offset, total, images) running the cached network over the whole
    image. Sampling: `images` only gives the batch size; returns samples [B, H, W, C] (images
    offset .. offset + B - 1 of a call for `total` images). Teacher-forced: feeds `images` pixel
    by pixel and returns the mixture parameters at every pixel [B, H, W, C_out]. h is [B, K],
    K = 0 for an unconditional model."""
    height, width, channels = model.config.image_shape
    signature = [tf.TensorSpec([2], tf.int32), tf.TensorSpec([None, model.config.num_classes]),
                 tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32),
                 tf.TensorSpec([None, height, width, channels])]

    # autograph off: the loops and branches are explicit tf.while_loop / tf.cond
    @tf.function(input_signature=signature, autograph=False)
    def generate(seed, h, offset, total, images):
        batch = tf.shape(images)[0]
        net = CachedPixelCNN(model, batch, ema, h if model.config.num_classes else None)
        vertical = net.initial_vertical()
        finished, current = net.initial_horizontal()
        out_channels = net.head.matrix.shape[-1] if teacher_forced else channels
        # every pixel's output (parameters or sample) in raster order, [B, out_channels] each
        outputs = tf.TensorArray(tf.float32, size=height * width,
                                 element_shape=[None, out_channels], clear_after_read=False)

        def row_step(row, outputs, fed_row, vertical, finished, current):
            """fed_row: image row row - 1 [B, W, C] (zeros for row 0)."""
            vertical, rows = net.vertical_row(vertical, row, _with_ones(fed_row, row > 0))

            def pixel_step(col, outputs, fed_pixel, current):
                """fed_pixel: image pixel (row, col - 1) [B, C] (zeros for column 0)."""
                current, ul = net.pixel(finished, current, rows, row, col,
                                        _with_ones(fed_pixel, col > 0))
                if teacher_forced:
                    outputs = outputs.write(row * width + col, net.mixture_params(ul))
                    fed_pixel = images[:, row, col]
                else:
                    fed_pixel = net.sample_pixel(ul, seed, row, col, offset, total)
                    outputs = outputs.write(row * width + col, fed_pixel)
                return col + 1, outputs, fed_pixel, current

            # the finished rows and the vertical rows are loop constants here, not carried
            _, outputs, _, current = tf.while_loop(
                lambda col, *_: col < width, pixel_step,
                (tf.constant(0), outputs, tf.zeros([batch, channels]), current))
            if teacher_forced:
                fed_row = images[:, row]
            else:
                fed_row = tf.transpose(outputs.gather(row * width + tf.range(width)), [1, 0, 2])
            return (row + 1, outputs, fed_row, vertical) + tuple(net.end_row(finished, current,
                                                                             row))

        _, outputs, _, _, _, _ = tf.while_loop(
            lambda row, *_: row < height, row_step,
            (tf.constant(0), outputs, tf.zeros([batch, width, channels]), vertical, finished,
             current))
        outputs = tf.reshape(outputs.stack(), [height, width, -1, out_channels])
        return tf.transpose(outputs, [2, 0, 1, 3])

    return generate


# model -> {(ema, teacher_forced, compute dtype): tf.function}
_GENERATORS = weakref.WeakKeyDictionary()


def _generator(model, ema, teacher_forced):
    generators = _GENERATORS.setdefault(model, {})
    key = (ema, teacher_forced, model.compute_dtype)
    if key not in generators:
        generators[key] = _build_generator(model, ema, teacher_forced)
    return generators[key]


def _checked_h(model, h, num_images):
    """h as float32 [N, K]; [N, 0] for an unconditional model (the generators' signature)."""
    num_classes = model.config.num_classes
    if num_classes and h is None:
        raise ValueError(f"class-conditional model (num_classes={num_classes}) needs a one-hot h "
                         f"[{num_images}, {num_classes}]")
    if not num_classes and h is not None:
        raise ValueError("unconditional model (num_classes=0) got a class input h")
    if h is None:
        return tf.zeros([num_images, 0])
    h = tf.convert_to_tensor(h, tf.float32)
    if tuple(h.shape) != (num_images, num_classes):
        raise ValueError(f"h has shape {tuple(h.shape)}, expected one one-hot row per image "
                         f"[{num_images}, {num_classes}]")
    return h


def sample_fast(model, num_images, seed, h=None, ema=None, batch_size=None):
    """Samples num_images images [N, H, W, C] in [-1, 1] with the cached network, batch_size
    (default: all) at a time; the images of pixel_cnn_pp.model.sample_naive(model, num_images,
    seed, h, ema) up to rounding, for any batch size. `h`: one-hot [N, K] for a class-conditional
    model; `ema`: sample with the Polyak averages. Energy-distance models work too: their head
    is per pixel, and each pixel draws the naive sampler's head noise, [10 N, H, W, 4] values."""
    num_images = int(num_images)
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    batch_size = num_images if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    h = _checked_h(model, h, num_images)
    generate = _generator(model, ema, teacher_forced=False)
    seed = nn.as_seed(seed)
    images = []
    offsets = range(0, num_images, batch_size)
    for offset in progress(offsets, desc="fast sampling", unit="batches",
                           disable=len(offsets) < 2):
        batch = min(batch_size, num_images - offset)
        images.append(generate(seed, h[offset:offset + batch], tf.constant(offset),
                               tf.constant(num_images),
                               tf.zeros([batch, *model.config.image_shape])))
    return tf.concat(images, axis=0)


def teacher_forced_params(model, x, h=None, ema=None):
    """Mixture parameters [B, H, W, C_out] of images x [B, H, W, C] in [-1, 1] computed by the
    cached layers pixel by pixel, feeding x's own pixels back instead of samples. They equal
    model(x, h, ema=ema) up to float rounding; a check of the cached network."""
    if model.config.energy_distance:
        raise ValueError("an energy-distance model has no mixture parameters to compare; compare "
                         "sample_fast with sample_naive instead")
    x = tf.convert_to_tensor(x, tf.float32)
    if tuple(x.shape[1:]) != tuple(model.config.image_shape):
        raise ValueError(f"x has shape {tuple(x.shape)}, the model expects "
                         f"[B, {', '.join(map(str, model.config.image_shape))}]")
    h = _checked_h(model, h, x.shape[0])
    generate = _generator(model, ema, teacher_forced=True)
    return generate(tf.zeros([2], tf.int32), h, tf.constant(0), tf.constant(x.shape[0]), x)
