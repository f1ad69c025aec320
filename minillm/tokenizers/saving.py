"""One JSON file per tokenizer: ``save(path)`` / ``load(path)`` around ``to_dict`` / ``from_dict``."""
import json
import os

from minillm import safe_io


class SavesAsJSON:
    """Mixin for a tokenizer with ``to_dict()`` and ``from_dict(d)``: write and read them as UTF-8 JSON."""

    def save(self, path):
        """Write the tokenizer as JSON to ``path`` (see ``to_dict``)."""
        with open(os.fspath(path), "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path):
        """Read what ``save`` wrote: a regular file, strict JSON (``minillm.safe_io``), then ``from_dict``."""
        return cls.from_dict(safe_io.read_json_object(path, f"a {cls.__name__} (JSON object)"))
