"""Progress of long work on stderr, for every package (decoding a data set, training, sampling,
an export): a tqdm bar on a terminal; off a terminal (`train.py > log 2>&1`, a batch system) a
plain line at most every PLAIN_PROGRESS_SECONDS instead of a bar redrawn with carriage returns.

It lives in `data`, the package every other one imports, so that model packages show progress
without importing the trainer.
"""
import sys
import time

PLAIN_PROGRESS_SECONDS = 30.0


def progress(iterable=None, total=None, desc="", unit="it", initial=0, disable=False):
    """`iterable` (or, without one, a counter advanced by update(n)) with progress on stderr.
    Both kinds offer iteration, update(n), set_postfix(dict), write(line) (a line on stdout that
    does not break the bar) and `with`."""
    if sys.stderr.isatty():
        from tqdm import tqdm
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=False,
                    disable=disable)
    return PlainProgress(iterable, total, desc, unit, initial, disable)


class PlainProgress:
    """Progress for a log file: "<desc>: 120/318 steps, 31 s, 3.87 steps/s, loss = 4.2" lines."""

    def __init__(self, iterable=None, total=None, desc="", unit="it", initial=0, disable=False,
                 interval=PLAIN_PROGRESS_SECONDS):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.count, self.initial = initial, initial
        self.disable, self.interval = disable, interval
        self.postfix = {}
        self.started = self.last = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set_postfix(self, values):
        self.postfix = dict(values)

    @staticmethod
    def write(line):
        print(line, flush=True)

    def update(self, n=1):
        self.count += n
        now = time.monotonic()
        if not self.disable and now - self.last >= self.interval:
            self.last = now
            print(self.line(now - self.started), file=sys.stderr, flush=True)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()

    def line(self, seconds):
        done = f"{self.count}/{self.total}" if self.total else f"{self.count}"
        rate = (self.count - self.initial) / max(seconds, 1e-9)
        details = "".join(f", {name} = {value}" for name, value in self.postfix.items())
        return (f"{self.desc}: {done} {self.unit}, {seconds:.0f} s, {rate:.2f} {self.unit}/s"
                f"{details}")
