"""The run log's per-item text made while a run is judged (:class:`LogParts`, used by
:meth:`judge_rl.runlog.RunLog.save`). Its own module, light to import: ``judge-rl label`` makes
one before its first request, while :mod:`judge_rl.runlog` (many models) is imported later."""

from __future__ import annotations

from typing import Any

_ITEM_INDENT = "\n   "
"""An item of ``label.comparisons`` / ``label.judgments`` sits 3 levels deep in the log."""


class LogParts:
    """The run log's per-item text (``label.comparisons`` and ``label.judgments``, exactly as
    ``RunLog.model_dump_json(indent=1)`` writes them), made while a run is judged so that
    little is left to do after its last answer. Items are matched by identity (the same
    object; the judge layer copies a record instead of changing it), so an item the run
    replaced later is written afresh by :meth:`dump`."""

    def __init__(self) -> None:
        self._text: dict[int, tuple[Any, str]] = {}

    def __len__(self) -> int:
        return len(self._text)

    def add(self, items: Any) -> None:
        """Write out ``items`` (comparisons, or judgments: one kind per call) now."""
        text = self._text
        new = {id(item): item for item in items if id(item) not in text}
        if not new:
            return
        todo = list(new.values())
        # one list dumped at once (a call per item costs twice as much); its items are split
        # at their closing lines (only an item's own closing brace sits 1 space deep)
        whole = _adapter(type(todo[0])).dump_json(todo, indent=1).decode("utf-8")
        pieces = whole[2:-2].split("\n },\n")
        if len(pieces) != len(todo):  # not one kind: item by item
            pieces = [_item_text(item) for item in todo]
        else:
            last = len(pieces) - 1
            pieces = [
                "  " + p.replace("\n", "\n  ") + ("\n   }" if i < last else "")
                for i, p in enumerate(pieces)
            ]
        for item, piece in zip(todo, pieces, strict=True):
            text[id(item)] = (item, piece)

    def _list(self, items: list[Any]) -> str:
        if not items:
            return "[]"
        get = self._text.get
        out = [
            got[1] if (got := get(id(item))) is not None and got[0] is item else _item_text(item)
            for item in items
        ]
        return "[\n" + ",\n".join(out) + "\n  ]"

    def dump(self, log: Any) -> str | None:
        """``log.model_dump_json(indent=1)``, its label items from what :meth:`add` wrote;
        None where that cannot be spliced safely (no label section, a key seen twice)."""
        section = log.label
        if not self._text or section is None or not (section.comparisons or section.judgments):
            return None  # nothing made in advance: the whole dump is the faster way
        bare = section.model_copy(update={"comparisons": [], "judgments": []})
        text = log.model_copy(update={"label": bare}).model_dump_json(indent=1)
        mark = '\n  "comparisons": [],\n  "judgments": [],\n'
        if text.count(mark) != 1:
            return None
        head, tail = text.split(mark)
        comps = self._list(section.comparisons)
        judgments = self._list(section.judgments)
        return f'{head}\n  "comparisons": {comps},\n  "judgments": {judgments},\n{tail}'


_ADAPTERS: dict[type, Any] = {}


def _adapter(kind: type) -> Any:
    got = _ADAPTERS.get(kind)
    if got is None:
        from pydantic import TypeAdapter

        got = _ADAPTERS[kind] = TypeAdapter(list[kind])  # type: ignore[valid-type]
    return got


def _item_text(item: Any) -> str:
    return "   " + item.model_dump_json(indent=1).replace("\n", _ITEM_INDENT)
