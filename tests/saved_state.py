"""What a checkpoint holds, for comparing runs."""
import tensorflow as tf


def checkpoint_values(path):
    """Every saved tensor of checkpoint `path` except the run description (whose flags differ
    between runs), the save counter and the position in the epoch (a JSON string)."""
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if not name.startswith(("run_config", "save_counter", "progress",
                                    "_CHECKPOINTABLE"))}
