"""Writes that land whole or not at all, and what a killed writer leaves behind.

Every file the trainer writes into a run directory goes through `replaced`: the new content is
written to `<path>.tmp<pid>` and renamed over `path`, so a reader, or a run resumed after a
crash, sees the old file or the new one and never half of one. A writer killed mid-write leaves its
temporary behind; `dead_temporaries` finds those by their name and their writer's pid.
"""
import contextlib
import os
import re
import shutil

# `<path>.tmp<pid>`, with the suffix a writer such as np.save appends
_TEMPORARY = re.compile(r"^.+\.tmp(\d+)(\.npy)?$")


@contextlib.contextmanager
def replaced(path, suffix=""):
    """Yields the temporary path (for a file or a directory) to write `path`'s new content to;
    renames it over `path` when the block ends, and removes it if the block fails. `suffix`: an
    ending the writer needs (np.save appends ".npy" to a name without it)."""
    temporary = f"{os.path.normpath(path)}.tmp{os.getpid()}{suffix}"
    try:
        yield temporary
        os.replace(temporary, path)
    finally:  # a failed write (full disk, an exception) leaves no temporary behind
        if os.path.isdir(temporary):
            shutil.rmtree(temporary, ignore_errors=True)
        elif os.path.exists(temporary):
            os.remove(temporary)


def write_bytes(path, payload):
    with replaced(path) as temporary, open(temporary, "wb") as file:
        file.write(payload)


def write_text(path, text):
    with replaced(path) as temporary, open(temporary, "w") as file:
        file.write(text)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def dead_temporaries(directory):
    """The names of the temporary files in `directory` whose writer has ended."""
    names = []
    for name in sorted(os.listdir(directory)):
        match = _TEMPORARY.match(name)
        if match and os.path.isfile(os.path.join(directory, name)) and \
                not _alive(int(match.group(1))):
            names.append(name)
    return names
