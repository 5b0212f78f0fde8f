"""Glow through train.py and sample.py (trainer/families/glow.py): the temperature grid, warmup
and Polyak settings in the log, exact resume, and sample.py's temperature rows, interpolation,
encoding, decoding and attribute manipulation, each checked against the exact-inverse property
decode(encode(x)) == x of the 8-bit images."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import data
from data.pixels import bits_per_dim
import sample
import train
import image_agreement
from cli_errors import error_line, last_error_line
from photo_crops import photo_crops
from saved_state import checkpoint_values
from trainer import families, flags

# 40 train images / batch 4 = 10 steps per epoch; 8x8 images, 2 levels.
GLOW_FLAGS = ["--model", "glow", "--image_size", "8", "--n_levels", "2", "--depth", "2",
              "--width", "8", "-b", "4", "-g", "1", "-t", "1", "-s", "5",
              "--epochs_warmup", "2", "--sample_batch_size", "16"]
STEPS_PER_EPOCH = 10


def train_glow(folder, save_dir, *extra):
    return train.main(["-d", "folder", "-i", folder, "-o", str(save_dir), *GLOW_FLAGS,
                       *map(str, extra)])


@pytest.fixture(scope="module")
def glow_run(tiny_image_folder, tmp_path_factory):
    """Two epochs, uninterrupted."""
    save_dir = tmp_path_factory.mktemp("glow")
    assert train_glow(tiny_image_folder, save_dir, "-x", 2) == 0
    return save_dir


@pytest.fixture(scope="module")
def two_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    paths = []
    for index, image in enumerate(photo_crops(2, 8, seed=11)):
        paths.append(str(folder / f"{index}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths, photo_crops(2, 8, seed=11)


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory):
    """30 8x8 photo crops in three class folders (a labelled `folder` set)."""
    root = tmp_path_factory.mktemp("labelled")
    for index, image in enumerate(photo_crops(30, 8, seed=2)):
        folder = root / ("astronaut", "chelsea", "coffee")[index % 3]
        folder.mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / f"{index}.png")
    return root


def run_sample(capsys, *argv):
    code = sample.main([*map(str, argv)])
    captured = capsys.readouterr()
    return code, captured


def test_training_logs_warmup_polyak_and_writes_the_temperature_grid(glow_run):
    with open(glow_run / "log.jsonl") as file:
        records = [json.loads(line) for line in file]
    config = records[0]["config"]
    assert config["model"] == "glow" and config["learntop"] is True  # folder's table default
    epochs = [record for record in records[1:] if "epoch" in record]
    assert [record["step"] for record in epochs] == [10, 20]
    # linear warmup over 2 epochs = 20 steps: lr * t / 20 after step t
    assert [record["learning_rate"] for record in epochs] == pytest.approx([0.0005, 0.001])
    assert all(np.isfinite(record["test_bits_per_dim"]) for record in epochs)
    with open(glow_run / "config.json") as file:
        stored = json.load(file)
    assert stored["ema_decay"] == pytest.approx(1 - 1 / STEPS_PER_EPOCH)  # openai/glow's beta2
    assert stored["model_config"]["n_levels"] == 2
    stored = np.load(glow_run / "folder_sample1.npz")  # 8 temperatures x 2 columns
    grid = stored["images"]
    assert grid.shape == (16, 8, 8, 3) and grid.dtype == np.uint8 and stored["columns"] == 2
    rows = grid.reshape(8, 2, 8, 8, 3)
    np.testing.assert_array_equal(rows[0, 0], rows[0, 1])  # T = 0: both columns are the mode
    assert not np.array_equal(rows[-1, 0], rows[-1, 1])  # T = 1: two different draws
    assert (glow_run / "folder_sample1.png").exists() and (glow_run / "ckpt-1.index").exists()


def test_resume_continues_exactly(glow_run, tiny_image_folder, tmp_path):
    assert train_glow(tiny_image_folder, tmp_path, "-x", 1, "-ns", 0) == 0
    assert train_glow(tiny_image_folder, tmp_path, "-x", 2, "-ns", 0, "--load_params") == 0
    expected = checkpoint_values(str(glow_run / "ckpt-1"))
    actual = checkpoint_values(str(tmp_path / "ckpt-1"))
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_temperature_rows_are_deterministic_by_seed(glow_run, tmp_path, capsys):
    outputs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        code, captured = run_sample(capsys, "-o", glow_run, "--n", 3, "--seed", seed,
                                    "--temperature", 0, 0.5, 1, "--out", tmp_path / f"{name}.png")
        assert code == 0, captured.err
        stored = np.load(tmp_path / f"{name}.npz")
        outputs[name] = stored["images"].reshape(-1, int(stored["columns"]), 8, 8, 3)
    np.testing.assert_array_equal(stored["temperatures"],
                                  np.float32([0, 0, 0, .5, .5, .5, 1, 1, 1]))
    assert outputs["a"].shape == (3, 3, 8, 8, 3)  # one row per temperature
    np.testing.assert_array_equal(outputs["a"], outputs["b"])
    assert not np.array_equal(outputs["a"][2], outputs["c"][2])
    np.testing.assert_array_equal(outputs["a"][0], outputs["c"][0])  # T = 0 ignores the seed
    picture = np.asarray(Image.open(tmp_path / "a.png"))  # 3 x 3 images, labelled rows
    assert picture.shape[0] == 3 * 8 * 21 + 4 * 2  # scaled 21 times to >= 512 px wide
    assert picture.shape[1] > picture.shape[0]  # and the label strip


def test_interpolation_between_images_starts_and_ends_on_them(glow_run, two_images, tmp_path,
                                                              capsys):
    paths, images = two_images
    code, captured = run_sample(capsys, "-o", glow_run, "--interpolate_images", *paths,
                                "--steps", 5, "--out", tmp_path / "mix.png")
    assert code == 0, captured.err
    row = np.load(tmp_path / "mix.npz")["images"]
    assert row.shape == (5, 8, 8, 3)
    np.testing.assert_array_equal(row[0], images[0])
    np.testing.assert_array_equal(row[-1], images[1])
    assert not np.array_equal(row[2], images[0]) and not np.array_equal(row[2], images[1])


def test_interpolation_between_seeds_ends_on_their_samples(glow_run, tmp_path, capsys):
    code, captured = run_sample(capsys, "-o", glow_run, "--seed", 3, "--seed_b", 4,
                                "--steps", 3, "--temperature", 0.8, "--out", tmp_path / "s.png")
    assert code == 0, captured.err
    row = np.load(tmp_path / "s.npz")["images"]
    for seed, end in ((3, row[0]), (4, row[-1])):
        code, captured = run_sample(capsys, "-o", glow_run, "--seed", seed, "--n", 1,
                                    "--temperature", 0.8, "--out", tmp_path / f"{seed}.png")
        assert code == 0, captured.err
        # an end decoded in a batch of 3 against a sample of 1: equal up to rare +-1 flips
        image_agreement.assert_images_agree(np.load(tmp_path / f"{seed}.npz")["images"][0],
                                            end, max_flip_fraction=0.01)


def test_encode_then_decode_gives_the_images_back(glow_run, two_images, tmp_path, capsys):
    paths, images = two_images
    code, captured = run_sample(capsys, "-o", glow_run, "--encode", *paths,
                                "--out", tmp_path / "enc.png")
    assert code == 0, captured.err
    latents = np.load(tmp_path / "enc.npz")["latents"]
    assert latents.shape == (2, 8 * 8 * 3)  # a flow keeps every dimension
    code, captured = run_sample(capsys, "-o", glow_run, "--decode", tmp_path / "enc.npz",
                                "--out", tmp_path / "dec.png")
    assert code == 0, captured.err
    np.testing.assert_array_equal(np.load(tmp_path / "dec.npz")["images"], images)
    code, captured = run_sample(capsys, "-o", glow_run, "--encode", "test",
                                "--out", tmp_path / "split.png")
    assert code == 0, captured.err
    assert np.load(tmp_path / "split.npz")["latents"].shape == (4, 192)


def test_manipulation_with_alpha_zero_is_the_reconstruction(glow_run, two_images,
                                                            labelled_folder, tmp_path, capsys):
    paths, images = two_images
    code, captured = run_sample(capsys, "-o", glow_run, "--manipulate", "chelsea",
                                "--alpha", 0, 2, "--manipulate_image", paths[0],
                                "--attr_data_set", "folder", "--attr_data_dir", labelled_folder,
                                "--out", tmp_path / "m.png")
    assert code == 0, captured.err
    stored = np.load(tmp_path / "m.npz")  # one row per image, one column per alpha
    np.testing.assert_array_equal(stored["alphas"], np.float32([0, 2]))
    columns = stored["images"]
    np.testing.assert_array_equal(columns[0], images[0])
    assert not np.array_equal(columns[1], images[0])
    cached = [name for name in os.listdir(glow_run) if "glow_attributes_folder" in name]
    assert len(cached) == 1 and np.load(glow_run / cached[0]).shape == (3, 192)
    code, captured = run_sample(capsys, "-o", glow_run, "--manipulate", "no_such",
                                "--attr_data_set", "folder", "--attr_data_dir", labelled_folder,
                                "--out", tmp_path / "m.png", "--force")
    assert code == 2 and "not one of 3 attributes" in last_error_line(captured.err)


def test_class_conditional_model_samples_the_requested_class(labelled_folder, tmp_path,
                                                             capsys):
    assert train.main(["-d", "folder", "-i", str(labelled_folder), "-o", str(tmp_path),
                       *GLOW_FLAGS, "-x", "1", "--ycond", "--weight_y", "0.01"]) == 0
    with open(tmp_path / "config.json") as file:
        assert json.load(file)["model_config"]["num_classes"] == 3
    code, captured = run_sample(capsys, "-o", tmp_path, "--temperature", 0, "--label", 1,
                                "--n", 2, "--out", tmp_path / "y.png")
    assert code == 0, captured.err
    mode = np.load(tmp_path / "y.npz")["images"]
    np.testing.assert_array_equal(mode[0], mode[1])  # T = 0 and one class: the same image
    code, captured = run_sample(capsys, "-o", tmp_path, "--label", 5)
    assert code == 2 and "classes 0..2" in last_error_line(captured.err)


def test_flags_of_the_other_family_and_impossible_sizes_are_one_line_errors(
        glow_run, tiny_image_folder, tmp_path, capsys):
    def train_error(argv):
        return error_line(train.main, argv, capsys)

    base = ["-d", "folder", "-i", tiny_image_folder, "-o", str(tmp_path / "run")]
    assert "unrecognized arguments: -q" in train_error(base + ["--model", "glow", "-q", "1"])
    assert "unrecognized arguments: --depth" in train_error(base + ["--depth", "2"])
    message = train_error(base + ["--model", "glow", "--image_size", "12"])
    assert "power of two" in message and "12" in message
    assert "2**n_levels" in train_error(base + ["--model", "glow", "--image_size", "8",
                                                "--n_levels", "4"])
    assert "has no labels" in train_error(base + ["--model", "glow", "--ycond"])
    assert not (tmp_path / "run").exists()

    pixelcnn = tf.train.Checkpoint(run_config=tf.Variable(json.dumps({"model": "pixelcnn"})))
    pixelcnn_path = pixelcnn.save(str(tmp_path / "p" / "ckpt"))
    code, captured = run_sample(capsys, "--checkpoint", pixelcnn_path, "--temperature", 0.5)
    assert code == 2
    assert "--temperature is a --model glow flag" in last_error_line(captured.err)
    code, captured = run_sample(capsys, "-o", glow_run, "--sampler", "naive")
    assert code == 2 and "offers temperatures" in last_error_line(captured.err)
    code, captured = run_sample(capsys, "-o", glow_run, "--interpolate_images",
                                tmp_path / "none.png", tmp_path / "none.png")
    assert code == 2 and "cannot read image" in last_error_line(captured.err)



def test_gradient_checkpointing_changes_no_loss_and_no_gradient(tiny_image_folder):
    # --gradient_checkpointing 1 trains through one batched, checkpointed call: same loss and
    # gradients as the plain call on the same noise
    args, family = flags.parse_train_args(["-d", "folder", "-i", tiny_image_folder, *GLOW_FLAGS,
                                           "--gradient_checkpointing", "1"])
    model = family.build(family.model_config(args, data.info("folder", tiny_image_folder, 8)))
    images, labels = photo_crops(4, 8, seed=1), np.zeros(4, np.int32)
    family.initialize(model, images, labels, seed=[5, 0])
    with tf.GradientTape(persistent=True) as tape:
        nats = family.nats(model, images, labels, training=True, seed=[5, 1])
        bits = bits_per_dim(nats, (8, 8, 3))
        plain_bits, _ = model.loss(images, seed=[5, 1], training=False)  # not checkpointed
    np.testing.assert_allclose(bits, plain_bits, rtol=1e-6)
    for variable in model.trainable_variables:
        expected = tape.gradient(plain_bits, variable).numpy()
        np.testing.assert_allclose(tape.gradient(bits, variable).numpy(), expected, rtol=1e-4,
                                   atol=1e-4 * np.abs(expected).max() + 1e-12)


def test_dal_augments_training_batches_only():
    """--dal changes what a training step sees (and so its loss); evaluation is never augmented."""
    from glow import model as glow_model
    family = families.get("glow")
    config = glow_model.GlowConfig(image_shape=(8, 8, 3), n_levels=2, depth=1, width=8, seed=3)
    plain, augmented = (family.build(dict(config.to_dict(), augmentation=level)) for level in (0, 2))
    images = tf.constant(photo_crops(4, 8))
    labels = tf.zeros([4], tf.int32)
    for model in (plain, augmented):
        family.initialize(model, images, labels, seed=[0, 0])
    for a, b in zip(plain.trainable_variables, augmented.trainable_variables):
        b.assign(a)  # same weights: only the augmentation differs
    step = tf.constant([5, 1], tf.int64)
    train_plain, train_augmented = (family.nats(m, images, labels, training=True, seed=step)
                                    for m in (plain, augmented))
    assert np.abs(train_plain.numpy() - train_augmented.numpy()).max() > 1e-3
    np.testing.assert_array_equal(family.nats(plain, images, labels).numpy(),
                                  family.nats(augmented, images, labels).numpy())
