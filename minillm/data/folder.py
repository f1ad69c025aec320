"""Reading a folder of text files that someone else filled.

    for name, text in read_folder("raw/", "*.txt", skipped=report.skipped): ...

A corpus folder is not always what it seems: a ``*.txt`` can be a symbolic
link to ``/dev/zero`` (endless) or to a file outside the folder (its content
would be copied into the cleaned corpus), a FIFO (reading it blocks forever),
a directory named ``sub.txt``, a link to itself or to nothing, a file we may
not read. Each of these is *skipped and reported*, never followed and never
the end of the run: the cleaner reads the folder's regular files, and only
those. Links are skipped even when they point inside the folder (their target
is read as itself anyway), and a linked directory is not entered.
"""
import fnmatch
import os
import stat

from minillm import safe_io

MAX_FILE_BYTES = 64 << 20     # larger than any one document the cleaner keeps (CleanConfig.max_chars)


def _why_not(path):
    """None if ``path`` is a regular file that is not a link, else why it is skipped (in words)."""
    try:
        st = os.lstat(path)
    except OSError as error:
        return f"cannot be examined: {error.strerror}"
    if os.path.islink(path):
        target = os.readlink(path)
        return f"a symbolic link (to {target[:60]!r}), not followed"
    if not stat.S_ISREG(st.st_mode):
        return safe_io.kind_of(st.st_mode)
    return None


def find_files(in_dir, pattern="*.txt", skipped=None):
    """Sorted relative names (with "/") of the regular files under ``in_dir`` whose name matches
    ``pattern``; each other match (and each linked directory) is appended to ``skipped`` as
    (relative name, why)."""
    root = os.fspath(in_dir)
    skipped = [] if skipped is None else skipped
    found, refused = [], []

    def unreadable(error):                       # a folder os.walk cannot list
        refused.append((os.path.relpath(error.filename, root).replace(os.sep, "/"),
                        f"a folder that cannot be listed: {error.strerror}"))

    for folder, dirs, files in os.walk(root, onerror=unreadable):   # followlinks=False: links not entered
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            linked_dir = name in dirs and os.path.islink(path)
            if not (fnmatch.fnmatchcase(name, pattern) or linked_dir):
                continue
            why = _why_not(path)
            if why is None:
                found.append(relative)
            else:
                refused.append((relative, why))
    skipped.extend(sorted(refused))
    return sorted(found)


def read_folder(in_dir, pattern="*.txt", skipped=None, max_bytes=MAX_FILE_BYTES):
    """Yield (relative name, text) for each regular ``pattern`` file under ``in_dir``, sorted by name.

    Files are read one at a time as UTF-8 (undecodable bytes become U+FFFD).
    What cannot be read as a regular file inside the folder (see the module
    docstring), or is larger than ``max_bytes``, is appended to ``skipped`` as
    (relative name, why) instead.
    """
    root = os.fspath(in_dir)
    if not os.path.isdir(root):
        raise ValueError(f"input folder {root!r} does not exist or is not a folder")
    skipped = [] if skipped is None else skipped
    for relative in find_files(root, pattern, skipped):
        path = os.path.join(root, relative)
        try:
            data = safe_io.read_bytes(path, max_bytes, "corpus file")   # a swap since the walk is refused too
        except (OSError, ValueError) as error:
            skipped.append((relative, str(error)))
            continue
        yield relative, data.decode("utf-8", errors="replace")
