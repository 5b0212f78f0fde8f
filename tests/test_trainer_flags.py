"""train.py flags: the per-data-set table fills what is unset, explicit flags always win."""
import pytest

from trainer import families, flags


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
    """sample.py's parser (parse_args builds it and parses; catch it at parse time)."""
    import argparse

    import sample
    built = {}

    def capture(parser, *args, **kwargs):
        built["parser"] = parser
        raise SystemExit(0)

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = capture
    try:
        with pytest.raises(SystemExit):
            sample.parse_args([])
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
    for family in families.FAMILIES.values():
        assert all(sampler in sampler_help for sampler in family.samplers)


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
