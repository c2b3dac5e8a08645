"""The prompt format shared by data preparation, generation and the ask command."""

from __future__ import annotations


def instruction_text(instruction_template: str, title: str) -> str:
    """The part of a training text the model is given (everything up to the description)."""
    return instruction_template.format(title=title)


def training_text(instruction_template: str, response_template: str, title: str, content: str) -> str:
    """One full training text: instruction followed by the response (the description)."""
    return instruction_text(instruction_template, title) + response_template.format(content=content)


def cut_at_stop(text: str, stop_strings: list[str]) -> str:
    """Cut generated text at the first stop string (the end of the model's turn) and strip it."""
    cut = len(text)
    for stop in stop_strings:
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    return text[:cut].strip()
