"""Keep TensorFlow's start-up notices out of train.py's and sample.py's output.

TensorFlow 2.21 writes "oneDNN custom operations are on ..." to stderr twice while `import
tensorflow` runs (once per native library that holds the notice), from C++ before absl's logging
is initialised, so TF_CPP_MIN_LOG_LEVEL cannot silence it. The notice only describes the build;
setting TF_ENABLE_ONEDNN_OPTS=0 would silence it by changing the computation, which we do not.
Instead, `quiet_tensorflow_import()` makes the first `import tensorflow`, whenever it happens, run
with file descriptor 2 captured, and writes back every captured line except the known notices
(a real warning or error during the import still shows).
"""
import importlib.abc
import importlib.util
import os
import sys
import tempfile

# Start-up lines that say nothing about this run (each appears once per native library).
NOTICES = ("All log messages before absl::InitializeLog() is called are written to STDERR",
           "oneDNN custom operations are on",
           "This TensorFlow binary is optimized to use available CPU instructions",
           "To enable the following instructions:")


def is_notice(line):
    return any(text in line for text in NOTICES)


class QuietLoader(importlib.abc.Loader):
    """Runs a module's loader with stderr captured, then replays what is not a notice."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self.loader.exec_module(module)
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                lines = captured.read().decode(errors="replace").splitlines(keepends=True)
                sys.stderr.write("".join(line for line in lines if not is_notice(line)))
                sys.stderr.flush()

    def __getattr__(self, name):  # resource readers and the like: the wrapped loader's
        return getattr(self.loader, name)


class QuietFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as usual once, with its loader wrapped in QuietLoader."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one import; find the real spec without this finder
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_import():
    """Filter the start-up notices of the first `import tensorflow` of this process (a no-op
    when TensorFlow is already imported)."""
    if "tensorflow" not in sys.modules and not any(
            isinstance(finder, QuietFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, QuietFinder())
