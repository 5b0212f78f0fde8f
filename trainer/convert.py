"""Import the originals' TF1 checkpoints (openai/pixel-cnn's released `params_cifar.ckpt`,
openai/glow's runs) as this project's run checkpoints, so that sample.py, train.py --eval_only,
train.py -r and sample.py --export work on them unchanged (scripts/convert_checkpoint.py).

A TF1 name-based checkpoint is read with tf.train.load_checkpoint. The architecture comes from
its names and shapes (the family's `original_checkpoint.architecture_flags`); what they cannot
tell (the data set, and a few flags each family names in its MISMATCH_HINT) comes from train.py's
own flags, which the converted run stores exactly as train.py would have. Then every tensor the
configured model needs must be in the file with its shape, and nothing else under `model/`.

What the converted run holds:
* raw weights: the `model/...` tensors;
* Polyak averages (what evaluation and sampling read): the `<name>/ExponentialMovingAverage`
  shadows, or copies of the raw weights when the file has none or `raw_averages` asks for them
  (openai/glow evaluated and sampled with its raw weights: its Polyak swap is commented out);
* optimizer: both originals create, after the network, a step counter t (= steps taken + 1) and
  per trainable variable, in creation order, its second and then its first moment, all as unnamed
  `Variable_<N>` tensors (openai/pixel-cnn nn.adam_updates, openai/glow optim.adamax). They are
  taken when exactly that sequence is there (integer tensors, a class-conditional
  openai/pixel-cnn run's sampling labels, are skipped) and every second moment is >= 0; otherwise
  the moments start at zero and the step at 0;
* epoch 0: neither original stores epochs (both restart their epoch loop on restore).
"""
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf

import data
from data.progress import progress
from glow import original_checkpoint as glow_names
from pixel_cnn_pp import original_checkpoint as pixelcnn_names
from trainer import checkpoint as ckpt
from trainer import families, flags, loop, precision
from trainer.ema import ExponentialMovingAverage

# family name -> (the original, the module naming this project's variables as it did)
ORIGINALS = {"pixelcnn": ("openai/pixel-cnn", pixelcnn_names),
             "glow": ("openai/glow", glow_names)}
SHADOW_SUFFIX = "/ExponentialMovingAverage"
_UNNAMED = re.compile(r"Variable(?:_(\d+))?")
_CHECKPOINT_FILE_SUFFIX = re.compile(r"\.(index|meta|data-\d+-of-\d+)$")


class ConvertError(Exception):
    """The checkpoint cannot be converted. The message is one line."""


def source_prefix(path):
    """The checkpoint prefix of `path`, which may also name one of its files (.index, ...)."""
    return _CHECKPOINT_FILE_SUFFIX.sub("", path)


def check_save_dir(save_dir):
    """Refuse a SAVE_DIR that is a file, holds a checkpoint, or holds anything at all."""
    if not os.path.exists(save_dir):
        return
    if not os.path.isdir(save_dir):
        raise ConvertError(f"{save_dir!r} is a file; pass a new directory with -o")
    existing = ckpt.latest_checkpoint(save_dir)
    if existing:
        raise ConvertError(f"{save_dir!r} already holds checkpoint {existing}; pass a new "
                           f"directory with -o")
    entries = sorted(os.listdir(save_dir))
    if entries:
        raise ConvertError(f"{save_dir!r} is not empty (holds {', '.join(entries[:3])}"
                           f"{', ...' if len(entries) > 3 else ''}); pass a new directory with -o")


def read_original(prefix, family_name):
    """(reader, {name: shape}, {name: dtype}) of an original checkpoint of `family_name`."""
    original, _ = ORIGINALS[family_name]
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConvertError(f"{prefix} is not a TF checkpoint ({first_line}); pass the prefix "
                           f"of its files, e.g. params_cifar.ckpt for params_cifar.ckpt.index")
    shapes = {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()}
    if ckpt.RUN_CONFIG_KEY in shapes:
        raise ConvertError(f"{prefix} is already a checkpoint of this project; sample.py "
                           f"--checkpoint {prefix} and train.py load it as it is")
    for other, (other_original, names) in ORIGINALS.items():
        if other != family_name and names.SIGNATURE in shapes:
            raise ConvertError(f"{prefix} is an {other_original} checkpoint, not {original}; "
                               f"convert it with `convert_checkpoint.py {other} {prefix}`")
    if ORIGINALS[family_name][1].SIGNATURE not in shapes:
        raise ConvertError(f"{prefix} holds no {original} weights (no tensor "
                           f"{ORIGINALS[family_name][1].SIGNATURE})")
    return reader, shapes, reader.get_variable_to_dtype_map()


# -- the run, built as train.py builds it (the one place that calls the trainer's pieces) --------

def train_arguments(family_name, save_dir, architecture, user_flags):
    """train.py's parsed flags for the converted run: the checkpoint's architecture flags, then
    the user's (which win, and are checked against the checkpoint's shapes afterwards)."""
    args, _ = flags.parse_train_args(["--model", family_name, "-o", save_dir, *architecture,
                                      *user_flags])
    return args


def build_run(args):
    """(run config, {name: trackable}, the optimizer) of a run of these flags: the objects
    train.py's trainer puts in its checkpoints (model, ema, epoch, loss scale and the family's
    optimizers), before any value is set."""
    family = families.get(args.model)
    try:
        info = data.info(args.data_set, args.data_dir, args.image_size, cache_dir=args.cache_dir)
        model_config = loop.checked_model_config(family, args, info)
        global_batch = args.batch_size * args.nr_gpu
        steps_per_epoch = loop.checked_steps_per_epoch(info, global_batch,
                                                       f"{args.batch_size} x {args.nr_gpu}")
    except (data.DataError, loop.ConfigError) as error:
        raise ConvertError(str(error)) from None
    model = family.build(model_config)
    ema_decay = family.ema_decay(args, steps_per_epoch)
    optimizers = family.make_optimizers(args, model, steps_per_epoch)
    objects = loop.checkpoint_objects(
        model, ExponentialMovingAverage(family.averaged_variables(model), ema_decay),
        tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch"), precision.LossScale(),
        optimizers)
    return loop.run_config(family, args, model_config, ema_decay), objects, optimizers["optimizer"]


def write_run(save_dir, run_config, objects, step):
    """Save the run into a fresh directory beside save_dir, then rename that to save_dir, so a
    failure leaves nothing behind. The checkpoint is `ckpt-0-step<step>`: in epoch 0, no batch of
    it trained yet, at the original's global step. Returns its path."""
    parent = os.path.dirname(os.path.abspath(save_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".converting_", dir=parent)
    try:
        path = ckpt.RunCheckpoint(staging, run_config, **objects).save_mid_epoch(0, step, {})
        os.rename(staging, save_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return os.path.join(save_dir, os.path.basename(path))


# -- values -------------------------------------------------------------------------------------

def check_tensors(prefix, shapes, expected, trainable, hint):
    """Every expected tensor present with its shape, shadows all or none, nothing else under
    `model/`; ConvertError naming the first tensor that is not."""
    for name, _, shape in expected:
        if name not in shapes:
            raise ConvertError(f"{prefix} lacks tensor {name} (shape {list(shape)}) that this "
                               f"configuration needs; {hint}")
        if shapes[name] != shape:
            raise ConvertError(f"{prefix}: tensor {name} has shape {list(shapes[name])}, this "
                               f"configuration needs {list(shape)}; {hint}")
    shadows = {name + SHADOW_SUFFIX: shape for name, _, shape in trainable}
    present = [name for name in shadows if name in shapes]
    if present:
        for name, shape in shadows.items():
            if name not in shapes:
                raise ConvertError(f"{prefix} lacks Polyak average {name} (it has "
                                   f"{len(present)} of {len(shadows)})")
            if shapes[name] != shape:
                raise ConvertError(f"{prefix}: Polyak average {name} has shape "
                                   f"{list(shapes[name])}, expected {list(shape)}")
    known = {name for name, _, _ in expected} | set(shadows)
    for name in sorted(shapes):
        if name.startswith("model/") and name not in known:
            raise ConvertError(f"{prefix} holds tensor {name}, which this configuration does not "
                               f"have; {hint}")
    return bool(present)


def copy_weights(reader, expected, trainable, ema, with_shadows):
    """Raw weights into the model; shadows (or the raw weights again) into the averages."""
    for name, variable, _ in progress(expected, total=len(expected), desc="weights"):
        variable.assign(np.reshape(reader.get_tensor(name), variable.shape)
                        .astype(variable.dtype.as_numpy_dtype))
    for name, variable, _ in progress(trainable, total=len(trainable), desc="Polyak averages"):
        value = reader.get_tensor(name + SHADOW_SUFFIX) if with_shadows else variable.numpy()
        ema.average(variable).assign(np.reshape(value, variable.shape)
                                     .astype(variable.dtype.as_numpy_dtype))


def original_moments(reader, shapes, dtypes, trainable):
    """(step, [(variable, first moment, second moment)]) from the unnamed optimizer tensors, or
    (None, why they cannot be mapped)."""
    numbered = sorted((int(match.group(1) or 0), name)
                      for name, match in ((name, _UNNAMED.fullmatch(name)) for name in shapes)
                      if match and dtypes[name].is_floating)
    names = [name for _, name in numbered]
    if not names:
        return None, "it holds no optimizer tensors"
    if len(names) != 1 + 2 * len(trainable):
        return None, (f"its {len(names)} unnamed float tensors are not a step counter and two "
                      f"moments for each of the {len(trainable)} trainable variables")
    counter = reader.get_tensor(names[0])
    if shapes[names[0]] != () or counter < 1 or counter != np.floor(counter):
        return None, f"{names[0]} is not a step counter (t >= 1)"
    moments = []
    for (name, variable, shape), second, first in zip(trainable, names[1::2], names[2::2]):
        if shapes[second] != shape or shapes[first] != shape:
            return None, (f"{second} and {first} ({list(shapes[second])}, {list(shapes[first])}) "
                          f"do not have the shape {list(shape)} of {name}")
        second_value = reader.get_tensor(second)
        if np.any(second_value < 0):
            return None, f"{second}, {name}'s second moment by position, has negative values"
        moments.append((variable, reader.get_tensor(first), second_value))
    return int(counter) - 1, moments


def copy_moments(optimizer, variables, moments):
    slot = {variable.ref(): index for index, variable in enumerate(variables)}
    for variable, first, second in moments:
        index = slot[variable.ref()]
        for target, value in ((optimizer.m1[index], first), (optimizer.m2[index], second)):
            target.assign(np.reshape(value, variable.shape).astype(variable.dtype.as_numpy_dtype))


def averages_line(with_shadows, raw_averages):
    if raw_averages:
        return "Polyak averages: the raw weights (--raw_averages)"
    if with_shadows:
        return "Polyak averages: from the ExponentialMovingAverage shadows"
    return "Polyak averages: none in the checkpoint, so the averages start as the raw weights"


# -- the whole conversion -----------------------------------------------------------------------

def convert(family_name, source, save_dir, user_flags=(), raw_averages=False):
    """Convert the original checkpoint `source` of family `family_name` into a run in save_dir
    (a new or empty directory) configured by train.py flags `user_flags`; `raw_averages` stores
    the raw weights as the Polyak averages even when the file has shadows. Returns the lines to
    print: what was found, what was assumed, and the commands that use the run.
    ConvertError (one line) when it cannot, with nothing written."""
    original, names = ORIGINALS[family_name]
    prefix = source_prefix(source)
    check_save_dir(save_dir)
    reader, shapes, dtypes = read_original(prefix, family_name)
    try:
        architecture = names.architecture_flags(shapes)
    except ValueError as error:
        raise ConvertError(f"{prefix}: {error}") from None
    except KeyError as error:
        raise ConvertError(f"{prefix}: missing tensor {error.args[0]}, which every {original} "
                           f"checkpoint holds") from None
    args = train_arguments(family_name, save_dir, architecture, user_flags)
    run_config, objects, optimizer = build_run(args)
    model, ema = objects["model"], objects["ema"]
    expected = names.original_variables(model)
    trainable = [entry for entry in expected if entry[1].trainable]
    with_shadows = check_tensors(prefix, shapes, expected, trainable, names.MISMATCH_HINT)

    copy_weights(reader, expected, trainable, ema, with_shadows and not raw_averages)
    step, moments = original_moments(reader, shapes, dtypes, trainable)
    if step is None:  # `moments` says why
        step, optimizer_line = 0, (f"optimizer: fresh moments and step 0, because {moments} "
                                   f"(fine-tuning starts the learning-rate schedule over)")
    else:
        copy_moments(optimizer, model.trainable_variables, moments)
        optimizer.iterations.assign(step)
        optimizer_line = (f"optimizer: step {step} and both moments of every variable from the "
                          f"unnamed Variable_<N> tensors")
    path = write_run(save_dir, run_config, objects, step)

    parameters = sum(int(np.prod(variable.shape)) for variable in model.trainable_variables)
    as_trained = " ".join(["--model", family_name, *architecture, *user_flags])
    return [
        f"{original} checkpoint {prefix}: {len(expected)} tensors, {parameters:,} parameters; "
        f"stored as a run of train.py {as_trained}",
        averages_line(with_shadows, raw_averages),
        optimizer_line,
        f"wrote {path}; the run's flags are stored with it:",
        f"  evaluate:  python3 train.py -o {save_dir} --eval_only",
        f"  sample:    python3 sample.py -o {save_dir}",
        f"  fine-tune: python3 train.py -o {save_dir} -r",
    ]
