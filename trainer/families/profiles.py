"""The one table of data-set kinds that every family's flag defaults are keyed by.

"cpu": sets small enough to train on a laptop in minutes (the embedded ones and image folders);
every family gives them a small model. "paper": the data sets of the papers, trained as the
originals did (8 GPUs for PixelCNN++ and Glow); also the kind of any data set not listed here.
"""
KIND_OF_DATA_SET = {"real32": "cpu", "fashion_mnist": "cpu", "folder": "cpu",
                    "cifar": "paper", "imagenet": "paper", "imagenet_npz": "paper",
                    "celebahq": "paper", "celebahq_pggan": "paper", "celebahq_images": "paper"}
DEFAULT_KIND = "paper"


def kind_of_data_set(data_set):
    return KIND_OF_DATA_SET.get(data_set, DEFAULT_KIND)
