"""train.py flags: the per-data-set table fills what is unset, explicit flags always win."""
import pytest

from trainer import flags


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
