"""What a checkpoint holds, for comparing runs."""
import tensorflow as tf


def checkpoint_values(path):
    """Every saved tensor of checkpoint `path` except the run description (whose flags differ
    between runs) and the save counter."""
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if not name.startswith(("run_config", "save_counter", "_CHECKPOINTABLE"))}
