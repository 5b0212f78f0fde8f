"""The tests' view of train.py's and sample.py's bad-input contract: exit code 2 and one line
on stderr saying what is wrong, never a traceback."""


def last_error_line(stderr):
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.strip().splitlines() if line.strip()][-1]


def error_line(main, argv, capsys):
    """Runs main(argv) (a script's main; argparse's own errors exit through SystemExit), asserts
    the exit code is 2 and returns the last line it wrote to stderr."""
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    return last_error_line(capsys.readouterr().err)
