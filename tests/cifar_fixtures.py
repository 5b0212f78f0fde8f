"""Tiny CIFAR-10 batch files written byte-for-byte the way the official ones are.

The official batches were pickled by Python 2: dict keys, the array's raw bytes and the dtype's
strings are py2 `str`, stored with the SHORT_BINSTRING/BINSTRING opcodes, and the array is rebuilt
by `numpy.core.multiarray._reconstruct`. Python 3 with protocol 2 would instead write BINUNICODE
keys and wrap bytes in `_codecs.encode`, so the fixtures use a pickler that emits the py2 opcodes.
"""
import io
import os
import pickle
import struct
import tarfile

import numpy as np

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]
LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]


class Py2Pickler(pickle._Pickler):
    """Protocol 2 with every str and bytes written as a py2 `str` (SHORT_BINSTRING/BINSTRING),
    and numpy's reconstructor named by its NumPy-1 module, as in the official files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def py2_pickle(obj):
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def batch_dict(images, labels, batch_label):
    """The dict of one batch file: NHWC uint8 images -> planar rows of 3072 values."""
    planar = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)
    return {"batch_label": batch_label, "labels": [int(v) for v in labels], "data": planar,
            "filenames": [f"fixture_{i:05d}.png" for i in range(len(images))]}


def write_batches(folder, train_images, train_labels, test_images, test_labels, num_train_files=5):
    """Write `cifar-10-batches-py/` into `folder`: the train images split over
    `data_batch_1..num_train_files`, plus `test_batch` and `batches.meta`. Returns its path."""
    batch_dir = os.path.join(folder, "cifar-10-batches-py")
    os.makedirs(batch_dir)
    parts = np.array_split(np.arange(len(train_images)), num_train_files)
    for k, part in enumerate(parts, start=1):
        with open(os.path.join(batch_dir, f"data_batch_{k}"), "wb") as f:
            f.write(py2_pickle(batch_dict(train_images[part], train_labels[part],
                                          f"training batch {k} of {num_train_files}")))
    with open(os.path.join(batch_dir, "test_batch"), "wb") as f:
        f.write(py2_pickle(batch_dict(test_images, test_labels, "testing batch 1 of 1")))
    with open(os.path.join(batch_dir, "batches.meta"), "wb") as f:
        f.write(py2_pickle({"num_cases_per_batch": len(parts[0]), "label_names": LABEL_NAMES,
                            "num_vis": 3072}))
    return batch_dir


def write_archive(batch_dir, archive_path):
    """`cifar-10-python.tar.gz` holding `batch_dir` as its top folder `cifar-10-batches-py/`."""
    with tarfile.open(archive_path, "w:gz") as tar:
        tar.add(batch_dir, arcname="cifar-10-batches-py")
    return archive_path
