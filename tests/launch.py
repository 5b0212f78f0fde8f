"""The environment and loopback addresses of the training processes a test launches."""
import contextlib
import os
import socket

# set by a launcher around this test process; a child must not inherit them
LAUNCH_VARIABLES = ("TF_CONFIG", "HOROVOD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def clean_environment(**extra):
    """This process's environment without the launch variables, TensorFlow's start-up notices
    off, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if key not in LAUNCH_VARIABLES}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def worker_addresses(count):
    """`count` distinct free 127.0.0.1 ports. Every probe stays bound until all are chosen, so
    the kernel cannot hand one port out twice within a cluster."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{probe.getsockname()[1]}" for probe in probes]
