"""Cached counterparts of the PixelCNN++ layers (Fast PixelCNN++, Ramachandran et al. 2017).

The naive sampler runs the whole network once per pixel, recomputing every activation H*W times.
Each layer here keeps a small cache of its recent inputs and computes only what one new row (the
vertical stream u) or one new pixel (the horizontal stream ul and the head) adds:

* `RowConv` (DownShiftedConv2D): the cache holds the last kh input rows, padded as the full layer
  pads them, [B, kh, width + kw - 1, C]; a run convolves it into one output row.
* `PixelConv` (DownRightShiftedConv2D): the cache holds the kh - 1 rows above and the current row
  so far, kh x (width + kw - 1) pixels (kw - 1 zero columns on the left); a run is the kh x kw
  neighbourhood of one output pixel (the rows above taken once per row for all its pixels).
  `end_row` moves the rows up after the last pixel of a row.
* `RowDeconv` / `PixelDeconv` (the shifted transposed convolutions): one input row (pixel) makes a
  stride x stride block of output rows (pixels), cached [B, kh, out_width, C] and handed out one
  row (pixel) at a time.
* `RowGatedResnet` / `PixelGatedResnet`: the gated ResNet block on those convolutions.

Resolutions. Steps are counted at full resolution (row i, column j). A layer whose input lives at
1/cache_every of the full resolution receives a new input only when i (and j) are multiples of
`cache_every`, and runs only every `run_every` steps, when the next layer takes its output:
run_every = cache_every * stride for a convolution, max(1, cache_every // stride) for a
transposed one (`run_every` below).

Weights. Every cached layer wraps the model's own layer and reads its effective kernel and bias
through `layer.weights(ema, dtype)` (Polyak averages when `ema` is given; cast to the model's
compute dtype), once per sampling call: it runs on the variables the model trains and
checkpoints, with no copy and no renaming. Caches have the compute dtype too.

Caches are tensors (and TensorArrays) that every method takes and returns, not tf.Variables, so
a tf.while_loop carries them and every sampling call starts afresh from `initial_cache` (zeros:
the zero padding above and left of the image).
"""
import tensorflow as tf

from pixel_cnn_pp import nn


def run_every(cache_every, stride, transposed):
    """How often (in full-resolution steps) a layer fed every `cache_every` steps must run: a
    stride-s convolution's output is used every cache_every * s steps, a stride-s transposed
    convolution's every max(1, cache_every // s) steps."""
    return max(1, cache_every // stride) if transposed else cache_every * stride


def _is_multiple(index, every):
    return tf.equal(index % every, 0)


class _Cached:
    """Shared part: the wrapped layer's effective weights and its (cache_every, run_every)."""

    def __init__(self, layer, ema, cache_every, transposed, dtype):
        self.kernel, self.bias = layer.weights(ema, dtype)
        self.dtype = dtype
        self.filter_size = tuple(layer.filter_size)
        self.stride = tuple(layer.stride)
        self.cache_every = cache_every
        self.run_every = run_every(cache_every, self.stride[0], transposed)

    def should_run(self, row, col=None):
        """Whether the next layer takes this layer's output at step (row[, col])."""
        ok = _is_multiple(row, self.run_every)
        return ok if col is None else tf.logical_and(ok, _is_multiple(col, self.run_every))


class RowConv(_Cached):
    """DownShiftedConv2D computed one output row at a time (vertical stream)."""

    def __init__(self, layer, in_width, ema, cache_every=1, dtype=tf.float32):
        super().__init__(layer, ema, cache_every, False, dtype)
        kh, kw = self.filter_size
        self.side = (kw - 1) // 2
        self.cache_shape = (kh, in_width + 2 * self.side, int(self.kernel.shape[2]))

    def initial_cache(self, batch):
        return tf.zeros([batch, *self.cache_shape], self.dtype)

    def push(self, cache, row):
        """Drops the oldest row and appends `row` [B, in_width, C], zero-padded left and right."""
        row = tf.pad(row, [[0, 0], [self.side, self.side], [0, 0]])
        return tf.concat([cache[:, 1:], row[:, None]], axis=1)

    def run(self, cache):
        """The output row [B, in_width // stride, C_out] below the cached rows."""
        out = tf.nn.conv2d(cache, self.kernel, [1, 1, self.stride[1], 1], "VALID")
        return tf.nn.bias_add(out, self.bias)[:, 0]


class PixelConv(_Cached):
    """DownRightShiftedConv2D computed one output pixel at a time (horizontal stream).

    The cache is a kh x (in_width + kw - 1) window of input pixels (kw - 1 zero columns on the
    left), in two parts. `finished` = (the kh - 1 finished rows [B, kh - 1, in_width + kw - 1, C],
    their part of every output pixel of the row plus the bias [B, out_width, C_out]): it does not
    change during a row, so that part is one row convolution when the row starts, and a sampling
    loop need not carry it from pixel to pixel. `current`: the row being filled, a TensorArray of
    [B, C] pixels (writing a pixel into it copies nothing, where updating a [B, kh, width, C]
    tensor would copy all of it every pixel). A pixel then needs only its kw inputs of the current
    row times the kernel's last row.
    """

    def __init__(self, layer, in_width, ema, cache_every=1, dtype=tf.float32):
        super().__init__(layer, ema, cache_every, False, dtype)
        kh, kw = self.filter_size
        if kh < 2:
            raise ValueError(f"{layer.name}: cached down-right-shifted convolution needs filter "
                             f"height >= 2, got {kh}")
        self.cache_width = in_width + kw - 1
        self.channels = int(self.kernel.shape[2])
        # the kernel's last row as one matrix over the kw x C current-row inputs, in its own order
        self.current_matrix = tf.reshape(self.kernel[kh - 1], [kw * self.channels, -1])

    def _empty_row(self, batch):
        row = tf.TensorArray(self.dtype, size=self.cache_width,
                             element_shape=[None, self.channels], clear_after_read=False)
        for col in range(self.filter_size[1] - 1):
            row = row.write(col, tf.zeros([batch, self.channels], self.dtype))
        return row

    def _above_part(self, above):
        """Bias plus the finished rows' contribution to every output pixel [B, out_width, C_out]."""
        out = tf.nn.conv2d(above, self.kernel[:-1], [1, 1, self.stride[1], 1], "VALID")
        return tf.nn.bias_add(out, self.bias)[:, 0]

    def initial_cache(self, batch):
        """(finished, current) for the first row: zero rows above it, nothing in it."""
        above = tf.zeros([batch, self.filter_size[0] - 1, self.cache_width, self.channels],
                         self.dtype)
        return (above, self._above_part(above)), self._empty_row(batch)

    def push(self, current, col, pixel):
        """Writes input pixel [B, C] of full-resolution column `col` (input column
        col // cache_every) into the current row, after the kw - 1 zero columns."""
        return current.write(col // self.cache_every + self.filter_size[1] - 1, pixel)

    def run(self, finished, current, col):
        """Output pixel [B, C_out] at full-resolution column `col` (output column
        c = col // run_every): input rows above and this one, columns c*stride - kw + 1 ..
        c*stride."""
        _, above_part = finished
        out_col = col // self.run_every
        start = out_col * self.stride[1]
        inputs = tf.concat([current.read(start + k) for k in range(self.filter_size[1])], axis=-1)
        return tf.gather(above_part, out_col, axis=1) + tf.matmul(inputs, self.current_matrix)

    def end_row(self, finished, current):
        """After the last pixel of a row: the current row becomes the newest finished row.
        Returns the next row's (finished, current)."""
        row = tf.transpose(current.stack(), [1, 0, 2])
        above = tf.concat([finished[0][:, 1:], row[:, None]], axis=1)
        return (above, self._above_part(above)), self._empty_row(tf.shape(row)[0])


def _check_block_stride(layer):
    """The transposed convolutions here turn one input row (pixel) into exactly stride output rows
    (and columns for the pixel one) that no other input touches, which needs kh <= stride."""
    (kh, kw), (sh, sw) = layer.filter_size, layer.stride
    if kh > sh:
        raise ValueError(f"{layer.name}: cached transposed convolution needs filter height {kh} "
                         f"<= stride {sh}")
    return kh, kw, sh, sw


class RowDeconv(_Cached):
    """DownShiftedDeconv2D producing output rows one at a time (vertical stream upsampling)."""

    def __init__(self, layer, in_width, ema, cache_every, dtype=tf.float32):
        super().__init__(layer, ema, cache_every, True, dtype)
        kh, kw, self.rows_per_input, sw = _check_block_stride(layer)
        self.full_width = in_width * sw + kw - 1  # the VALID transposed output, before the crop
        self.side = (kw - 1) // 2
        self.cache_shape = (self.rows_per_input, self.full_width - 2 * self.side,
                            int(self.kernel.shape[2]))

    def initial_cache(self, batch):
        return tf.zeros([batch, *self.cache_shape], self.dtype)

    def push(self, cache, row):
        """The stride output rows [B, stride, out_width, C_out] made by input row [B, in_width, C]
        (they replace the previous input's rows, all of which have been handed out)."""
        del cache
        shape = [tf.shape(row)[0], self.rows_per_input, self.full_width, self.cache_shape[2]]
        out = tf.nn.conv2d_transpose(row[:, None], self.kernel, shape, [1, *self.stride, 1],
                                     "VALID")
        return tf.nn.bias_add(out[:, :, self.side:self.full_width - self.side], self.bias)

    def run(self, cache, row):
        """The output row [B, out_width, C_out] for full-resolution row `row`."""
        return tf.gather(cache, (row // self.run_every) % self.rows_per_input, axis=1)


class PixelDeconv(_Cached):
    """DownRightShiftedDeconv2D producing output pixels one at a time (horizontal upsampling)."""

    def __init__(self, layer, in_width, ema, cache_every, dtype=tf.float32):
        super().__init__(layer, ema, cache_every, True, dtype)
        kh, kw, sh, sw = _check_block_stride(layer)
        channels = int(self.kernel.shape[2])
        # the sh x sw block of one input pixel: block[a, b] = pixel @ kernel[a, b]^T (zero taps
        # beyond the filter when it is smaller than the stride)
        kernel = tf.pad(self.kernel, [[0, sh - kh], [0, sw - kw], [0, 0], [0, 0]])
        self.matrix = tf.reshape(tf.transpose(kernel, [3, 0, 1, 2]), [-1, sh * sw * channels])
        self.block_shape = (sh, sw, channels)
        # one block per input column: [B, in_width, sh*sw*C] is [B, sh, in_width*sw, C] reordered
        self.cache_shape = (in_width, sh * sw * channels)

    def initial_cache(self, batch):
        return tf.zeros([batch, *self.cache_shape], self.dtype)

    def push(self, cache, col, pixel):
        """Stores the block made by input pixel [B, C_in] of full-resolution column `col`."""
        batch = tf.shape(pixel)[0]
        index = tf.stack([tf.range(batch), tf.fill([batch], col // self.cache_every)], axis=1)
        return tf.tensor_scatter_nd_update(cache, index, tf.matmul(pixel, self.matrix))

    def run(self, cache, row, col):
        """Output pixel [B, C_out] of full-resolution step (row, col)."""
        sh, sw, channels = self.block_shape
        out_row, out_col = row // self.run_every, col // self.run_every
        block = tf.gather(cache, out_col // sw, axis=1)
        block = tf.reshape(block, [-1, sh * sw, channels])
        return tf.gather(block, (out_row % sh) * sw + out_col % sw, axis=1) + self.bias


class NIN:
    """The model's NIN (1x1 convolution) on a row [B, W, C] or a pixel [B, C]."""

    def __init__(self, layer, ema, dtype=tf.float32):
        self.matrix, self.bias = layer.weights(ema, dtype)

    def __call__(self, x):
        return tf.tensordot(x, self.matrix, axes=1) + self.bias


def gated_resnet(x, a, conv1, conv2, nin_aux, class_bias, nonlinearity):
    """The gated ResNet block on cached convolutions (pixel_cnn_pp.nn.GatedResnet, no dropout):
    c1 = nonlin(conv1(nonlin(x)) [+ nin_aux(nonlin(a))]); c2 = conv2(c1) [+ h @ hw];
    out = x + c2[..., :F] * sigmoid(c2[..., F:]). `conv1`, `conv2` map an input to
    (output, new cache). Returns (out, (conv1 cache, conv2 cache))."""
    c1, cache1 = conv1(nonlinearity(x))
    if a is not None:
        c1 += nin_aux(nonlinearity(a))
    c2, cache2 = conv2(nonlinearity(c1))
    if class_bias is not None:
        c2 += class_bias
    return nn.gated_residual(x, c2), (cache1, cache2)


class _CachedGatedResnet:
    def __init__(self, block, conv_class, width, ema, h, nonlinearity, cache_every, dtype):
        self.conv1 = conv_class(block.conv1, width, ema, cache_every, dtype)
        self.conv2 = conv_class(block.conv2, width, ema, cache_every, dtype)
        self.nin_aux = None if block.nin_aux is None else NIN(block.nin_aux, ema, dtype)
        # h @ hw: the class bias is the same at every pixel, so it is computed once
        self.class_bias = (None if block.hw is None else tf.matmul(
            tf.cast(h, dtype), tf.cast(nn.averaged(block.hw, ema), dtype)))
        self.nonlinearity = nonlinearity

    def initial_cache(self, batch):
        return (self.conv1.initial_cache(batch), self.conv2.initial_cache(batch))


class RowGatedResnet(_CachedGatedResnet):
    """Vertical-stream gated ResNet block (DownShiftedConv2D convs), one row at a time."""

    def __init__(self, block, width, ema, h, nonlinearity, cache_every=1, dtype=tf.float32):
        super().__init__(block, RowConv, width, ema, h, nonlinearity, cache_every, dtype)

    def __call__(self, cache, x, a=None):
        """x, a: rows [B, W, C]. Returns (new cache, output row)."""
        def step(conv, conv_cache):
            def apply(inputs):
                new_cache = conv.push(conv_cache, inputs)
                return conv.run(new_cache), new_cache
            return apply

        class_bias = None if self.class_bias is None else self.class_bias[:, None, :]
        out, cache = gated_resnet(x, a, step(self.conv1, cache[0]), step(self.conv2, cache[1]),
                                  self.nin_aux, class_bias, self.nonlinearity)
        return cache, out


class PixelGatedResnet(_CachedGatedResnet):
    """Horizontal-stream gated ResNet block (DownRightShiftedConv2D convs), one pixel at a time.
    Its cache is (finished, current), each a pair over (conv1, conv2) (see PixelConv)."""

    def __init__(self, block, width, ema, h, nonlinearity, cache_every=1, dtype=tf.float32):
        super().__init__(block, PixelConv, width, ema, h, nonlinearity, cache_every, dtype)

    def initial_cache(self, batch):
        (finished1, current1), (finished2, current2) = super().initial_cache(batch)
        return (finished1, finished2), (current1, current2)

    def __call__(self, finished, current, col, x, a=None):
        """x, a: pixels [B, C] at full-resolution column `col`. Returns (new current, output)."""
        def step(conv, conv_finished, conv_current):
            def apply(inputs):
                new_current = conv.push(conv_current, col, inputs)
                return conv.run(conv_finished, new_current, col), new_current
            return apply

        out, current = gated_resnet(x, a, step(self.conv1, finished[0], current[0]),
                                    step(self.conv2, finished[1], current[1]),
                                    self.nin_aux, self.class_bias, self.nonlinearity)
        return current, out

    def end_row(self, finished, current):
        finished1, current1 = self.conv1.end_row(finished[0], current[0])
        finished2, current2 = self.conv2.end_row(finished[1], current[1])
        return (finished1, finished2), (current1, current2)
