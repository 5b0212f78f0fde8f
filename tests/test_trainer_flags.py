"""train.py flags: the per-data-set table fills what is unset, explicit flags always win."""
import os
import subprocess
import sys

import pytest

from trainer import families, flags

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_paper_data_sets_get_the_original_defaults():
    args, family = flags.parse_train_args(["-d", "cifar"])
    assert family.name == "pixelcnn"
    assert (args.nr_resnet, args.nr_filters, args.nr_logistic_mix) == (5, 160, 10)
    assert (args.batch_size, args.nr_gpu, args.save_interval, args.max_epochs) == (16, 8, 20, 5000)
    assert (args.learning_rate, args.lr_decay, args.polyak_decay) == (0.001, 0.999995, 0.9995)
    assert (args.init_batch_size, args.dropout_p, args.num_samples, args.seed) == (16, 0.5, 1, 1)
    assert args.sample_batch_size == 16 * 8  # one batch of batch_size * nr_gpu, as the original


def test_the_embedded_default_set_gets_the_small_cpu_setting():
    args, _ = flags.parse_train_args([])
    assert args.data_set == "real32"
    assert args.nr_gpu == 1 and args.nr_filters < 160 and args.max_epochs < 5000


def test_explicit_flags_win_over_the_table():
    args, _ = flags.parse_train_args(["-d", "cifar", "-n", "7", "-g", "1", "--polyak_decay",
                                      "0.5", "-x", "3"])
    assert (args.nr_filters, args.nr_gpu, args.polyak_decay, args.max_epochs) == (7, 1, 0.5, 3)
    assert args.nr_resnet == 5


@pytest.mark.parametrize("argv", [["-g", "0"], ["-b", "-1"], ["-ns", "-1"], ["--model", "x"],
                                  ["--out", "nll.npy"]])
def test_impossible_values_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        flags.parse_train_args(argv)
    assert exit.value.code == 2
    assert "error:" in capsys.readouterr().err


def sample_parser():
    """sample.py's parser (parse_sample_args builds it and parses; catch it at parse time)."""
    import argparse

    built = {}

    def capture(parser, *args, **kwargs):
        built["parser"] = parser
        raise SystemExit(0)

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = capture
    try:
        with pytest.raises(SystemExit):
            flags.parse_sample_args([])
    finally:
        argparse.ArgumentParser.parse_args = original
    return built["parser"]


@pytest.mark.parametrize("name", families.names())
def test_every_train_flag_has_a_help_text_and_the_help_names_the_other_families(name):
    parser = flags.train_parser(families.get(name))
    assert [action.option_strings for action in parser._actions if not action.help] == []
    others = [other for other in families.names() if other != name]
    assert all(f"--model {other} --help" in parser.description for other in others)


def test_every_sample_flag_has_a_help_text_and_the_samplers_are_listed():
    parser = sample_parser()
    assert [action.option_strings for action in parser._actions if not action.help] == []
    sampler_help = next(a.help for a in parser._actions if a.dest == "sampler")
    for name in families.names():
        assert all(sampler in sampler_help for sampler in families.flags_of(name).sampler_names)


HELP_AND_MISTAKES = [("train.py", "--help", 0), ("train.py", "--model glow --help", 0),
                     ("train.py", "--model biggan --help", 0), ("sample.py", "--help", 0),
                     ("train.py", "--model glow --problem cifar10", 2),
                     ("train.py", "-d no_such_set", 2), ("sample.py", "--n 0", 2)]


@pytest.mark.parametrize("script, arguments, code", HELP_AND_MISTAKES)
def test_help_and_flag_mistakes_answer_without_importing_tensorflow(script, arguments, code):
    """The scripts parse their flags before TensorFlow loads, so --help takes a fraction of a
    second instead of TensorFlow's import."""
    probe = ("import runpy, sys\n"
             f"sys.argv = [{script!r}, *{arguments.split()!r}]\n"
             "try:\n"
             f"    runpy.run_path({script!r}, run_name='__main__')\n"
             "except SystemExit as end:\n"
             "    print('exit', end.code, 'tensorflow' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPOSITORY, capture_output=True,
                            text=True)
    assert result.stdout.splitlines()[-1] == f"exit {code} False", result.stderr
    assert ("usage:" in result.stdout) == (code == 0)


@pytest.mark.parametrize("name", families.names())
def test_a_family_model_side_is_its_command_line_with_its_samplers(name):
    declared, family = families.flags_of(name), families.get(name)
    assert isinstance(family, type(declared))  # the model side extends the declaration
    assert family.sampler_names == tuple(sorted(family.samplers))
    assert family.default_sampler in family.samplers


def test_glow_flag_choices_are_the_values_the_model_accepts():
    from data import augment
    from glow import model as glow_model
    from trainer.families import glow_flags
    assert glow_flags.PERMUTATIONS == tuple(sorted(glow_model.PERMUTATIONS))
    assert glow_flags.COUPLINGS == tuple(sorted(glow_model.COUPLINGS))
    assert glow_flags.AUGMENTATION_LEVELS == augment.LEVELS


@pytest.mark.parametrize("argv, hint", [
    (["--model", "glow", "--problem", "cifar10"], "-d cifar"),
    (["--model", "glow", "--problem=celeba"], "-d celebahq"),
    (["--model", "glow", "--n_train", "50000"], "whole train split"),
    (["--model", "glow", "--n_test", "10000"], "whole test split"),
    (["--model", "glow", "--n_batch_test", "50"], "-b/--batch_size"),
    (["--model", "glow", "--restore_path", "x.ckpt"], "-r/--load_params"),
    (["--model", "glow", "--inference"], "--encode test"),
    (["--model", "glow", "-c"], "--ycond"),
    (["--n_train", "5"], "whole train split"),
])
def test_the_originals_flags_are_answered_with_their_replacement(argv, hint, capsys):
    with pytest.raises(SystemExit) as exit:
        flags.parse_train_args(argv)
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert hint in error and "unrecognized" not in error


def test_logdir_is_save_dir_and_unknown_flags_stay_unrecognized(capsys):
    args, _ = flags.parse_train_args(["--logdir", "runs/a"])
    assert args.save_dir == "runs/a"
    with pytest.raises(SystemExit):
        flags.parse_train_args(["--no_such_flag"])
    assert "unrecognized arguments: --no_such_flag" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["-d", "cifar"], 256), (["-d", "imagenet", "--image_size", "64"], 64),
    (["-d", "celebahq"], 4), (["-d", "celebahq", "--image_size", "128"], 16),
    (["-d", "real32"], 16), (["-d", "cifar", "--n_batch_init", "8"], 8)])
def test_glow_init_batch_follows_openai_glows_rule_on_the_paper_sets(argv, expected):
    args, _ = flags.parse_train_args(["--model", "glow", *argv])
    assert args.init_batch_size == expected  # 256 * (32 / image size)^2; a given flag wins
