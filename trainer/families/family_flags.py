"""The command-line side of a model family, importable without TensorFlow: its name, its train.py
and sample.py flags, its flag defaults per data set and the names of its samplers.

train.py and sample.py parse their flags (and print --help) from this side alone, before
TensorFlow is imported; the model side (`trainer.families.base.Family`) extends it.

Flag defaults: every data set is of a kind (`profiles.KIND_OF_DATA_SET`): the small CPU kind
(embedded and folder sets) or the paper kind (the papers' data sets, and any data set not in the
table). A family's `profiles[kind]` are its defaults for that kind, refined per data set by
`data_set_profiles`. A flag given on the command line always wins.
"""
from trainer.families.profiles import kind_of_data_set


class SampleError(Exception):
    """sample.py's flags cannot be served for this model. The message is one line."""


class FamilyFlags:
    name = None
    # {"cpu": {...}, "paper": {...}}: flag values for the flags left unset (None)
    profiles = {}
    # {data_set: {...}}: refinements of the data set's kind profile
    data_set_profiles = {}
    # sample.py --sampler's choices (the model side's `samplers` keys) and its default
    sampler_names = ()
    default_sampler = None

    def defaults(self, data_set, image_size=None):
        """Values for the flags left at None on `data_set` (at --image_size `image_size`)."""
        values = dict(self.profiles[kind_of_data_set(data_set)])
        values.update(self.data_set_profiles.get(data_set, {}))
        return values

    def add_arguments(self, parser):
        """The family's own train.py flags."""

    def add_sample_arguments(self, group):
        """The family's own sample.py flags (an argument group named after it)."""
