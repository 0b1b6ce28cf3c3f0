"""Jupyter widgets rebuilt from the comm messages nbrelay kept, as a frontend's widget
manager holds them: each model's latest state, its text line, and the nbformat widget state.

A ``comm_open`` with the widget target makes a model from its full state; a ``comm_msg``
with method ``update`` (or ``echo_update``) merges the traits it names; ``comm_close`` ends
the model. Whatever the number of updates, a model is one dict: replay coalesces them.
"""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Iterable, Iterator
from typing import Any

from .protocol import WIDGET_TARGET

#: The record types that make widgets and show them: what ``tail`` reads of the records
#: before where it starts.
WIDGET_RECORDS = ("comm_open", "comm_msg", "comm_close", "display_data", "execute_result")
VIEW_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
REFERENCE = "IPY_MODEL_"  # how a trait names another model
PROGRESS = frozenset({"IntProgressModel", "FloatProgressModel"})
TEXTS = frozenset({"HTMLModel", "LabelModel"})
BAR_WIDTH = 10  # characters, as tqdm draws a bar of unknown width in a terminal
MAX_DEPTH = 16  # boxes in boxes a text line goes into: records may name models in a cycle
TAG = re.compile(r"<[^>]*>")


def shown_model(content: dict[str, Any]) -> str | None:
    """The model a display_data or execute_result shows, if it shows a widget."""
    data = content.get("data")
    view = data.get(VIEW_MIME) if isinstance(data, dict) else None
    model_id = view.get("model_id") if isinstance(view, dict) else None
    return model_id if isinstance(model_id, str) else None


def _references(value: Any) -> Iterator[str]:
    """The model ids a trait value names, in lists and objects too (a Box's children)."""
    if isinstance(value, str):
        if value.startswith(REFERENCE):
            yield value[len(REFERENCE) :]
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _references(item)


class Widgets:
    """The widget models of one kernel, from its records in seq order."""

    def __init__(self) -> None:
        self.models: dict[str, dict[str, Any]] = {}  # comm id -> its state, traits merged

    def apply(self, record: dict[str, Any]) -> str | None:
        """One record; the id of the model it changed, if it changed one."""
        msg_type = record.get("msg_type")
        content = record.get("content")
        if not isinstance(content, dict):
            return None
        comm_id = content.get("comm_id")
        data = content.get("data")
        if not isinstance(comm_id, str):
            return None
        if msg_type == "comm_close":
            return comm_id if self.models.pop(comm_id, None) is not None else None
        if not isinstance(data, dict) or not isinstance(data.get("state"), dict):
            return None
        if msg_type == "comm_open" and content.get("target_name") == WIDGET_TARGET:
            self.models[comm_id] = copy.deepcopy(data["state"])  # its own: outputs go in it
            return comm_id
        model = self.models.get(comm_id)
        if model is None or msg_type != "comm_msg":
            return None
        if data.get("method") not in ("update", "echo_update"):
            return None  # "custom" messages change no trait
        model.update(copy.deepcopy(data["state"]))
        return comm_id

    def capturing(self, parent: str) -> dict[str, Any] | None:
        """The Output widget whose ``with out:`` block the request ``parent`` runs in, if
        any: the frontend puts that request's outputs in it, not in the cell."""
        if not parent:
            return None
        for model in self.models.values():
            if model.get("_model_name") == "OutputModel" and model.get("msg_id") == parent:
                return model
        return None

    def closure(self, model_ids: Iterable[str]) -> list[str]:
        """``model_ids`` and every model they name, directly or not, that is still open."""
        seen: list[str] = []
        todo = [m for m in model_ids if m in self.models]
        while todo:
            model_id = todo.pop()
            if model_id in seen:
                continue
            seen.append(model_id)
            todo += [m for m in _references(self.models[model_id]) if m in self.models]
        return seen

    def state(self, model_ids: Iterable[str]) -> dict[str, Any]:
        """The nbformat widget state (what JupyterLab's "save widget state" writes in a
        notebook's metadata) of the models ``model_ids`` show."""
        state = {}
        for model_id in sorted(self.closure(model_ids)):
            traits = self.models[model_id]
            state[model_id] = {
                "model_name": traits.get("_model_name"),
                "model_module": traits.get("_model_module"),
                "model_module_version": traits.get("_model_module_version"),
                "state": traits,
            }
        return {"version_major": 2, "version_minor": 0, "state": state}

    def line(self, model_id: str, depth: int = 0) -> str | None:
        """A progress widget as one text line, as tqdm draws it in a terminal (description,
        percentage, bar, n/total and rate, from an HBox's HTML children); None for a model
        that is not a progress bar, a text or a box of them."""
        model = self.models.get(model_id)
        if model is None or depth > MAX_DEPTH:
            return None
        name = model.get("_model_name")
        if name in PROGRESS:
            return self._bar(model)
        if name in TEXTS:
            return _text(model.get("value"))
        if name in ("HBoxModel", "VBoxModel"):
            children = model.get("children")
            parts = [
                self.line(child, depth + 1)
                for child in _references(children if isinstance(children, list) else [])
            ]
            if not parts or any(part is None for part in parts):
                return None
            return ("" if name == "HBoxModel" else "\n").join(p for p in parts if p is not None)
        return None

    def _bar(self, model: dict[str, Any]) -> str:
        value, low, high = model.get("value"), model.get("min", 0), model.get("max", 100)
        numbers = (value, low, high)
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in numbers):
            return "|" + " " * BAR_WIDTH + "|"
        span = high - low
        share = min(1.0, max(0.0, (value - low) / span)) if span > 0 else 1.0
        full = round(share * BAR_WIDTH)
        description = _text(model.get("description"))
        return f"{description}|{'█' * full}{' ' * (BAR_WIDTH - full)}|"


def _text(value: Any) -> str:
    """An HTML or Label widget's value as terminal text: entities decoded, figure spaces
    (tqdm pads numbers with them) as spaces, and no line breaks."""
    if not isinstance(value, str):
        return ""
    text = html.unescape(TAG.sub("", value)).replace("\u2007", " ")
    return " ".join(text.splitlines())
