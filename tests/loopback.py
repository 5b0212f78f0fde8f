"""Loopback addresses for a MultiWorkerMirroredStrategy cluster started by a test."""
import contextlib
import socket


def worker_addresses(count):
    """`count` distinct free 127.0.0.1 ports. Every probe stays bound until all are chosen, so
    the kernel cannot hand one port out twice within a cluster."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{probe.getsockname()[1]}" for probe in probes]
