"""The prompt format shared by tokenization, generation, metrics and the ask command.

One PromptFormat turns a title into the prompt the model is given and a (title, description) pair into a
training text (prompt + response), in every stage, so what the model learns and what it is asked match.

- `plain` (the seed's recipe): `instruction` and `response` are templates with `{title}` and `{content}`;
  their tags are plain text for the tokenizer.
- `chat_template`: `instruction` (with `{title}`) is a user message and `response` (with `{content}`) the
  assistant's answer, rendered by the tokenizer's own chat template. The prompt is the rendered conversation
  up to and including the generation prompt; the response is what the template adds for the answer,
  through its end-of-turn token, which is also the stop string unless stop strings are given.
"""

from __future__ import annotations

PROMPT_FORMATS = ("plain", "chat_template")

# Stand-ins rendered through the chat template once; each row then fills the pieces around them (rendering
# every row through Jinja would cost about as much as tokenizing it).
_TITLE_MARK = "\x00ftpipe-title\x00"
_CONTENT_MARK = "\x00ftpipe-content\x00"


class PromptFormatError(ValueError):
    """A prompt format that cannot be applied with this tokenizer (the message says why and what to do)."""


class PromptFormat:
    """prompt(title), response(content), text(title, content) and the stop strings of one prompt setting."""

    def __init__(
        self,
        instruction: str,
        response: str = "{content}",
        format: str = "plain",  # noqa: A002 (the config key's name)
        stop_strings: list[str] | None = None,
        tokenizer=None,
    ):
        if format not in PROMPT_FORMATS:
            raise PromptFormatError(f"prompt.format must be one of {PROMPT_FORMATS}, not {format!r}")
        self.format = format
        self._instruction, self._response, self._tokenizer = instruction, response, tokenizer
        if format == "chat_template":
            self._prompt_pieces, self._response_pieces, self.end_of_turn = _chat_pieces(
                tokenizer, instruction, response
            )
        else:
            after_content = response.format(content=_CONTENT_MARK).split(_CONTENT_MARK)[-1]
            self.end_of_turn = after_content.strip() or (tokenizer.eos_token if tokenizer is not None else None)
        self.given_stop_strings = None if stop_strings is None else list(stop_strings)

    @classmethod
    def from_settings(cls, prompt: dict, tokenizer=None) -> PromptFormat:
        """From the config's `prompt` section."""
        return cls(
            prompt["instruction"],
            prompt["response"],
            prompt.get("format", "plain"),
            prompt.get("stop_strings"),
            tokenizer,
        )

    @property
    def stop_strings(self) -> list[str]:
        """The stop strings given, else the format's end of turn."""
        if self.given_stop_strings is not None:
            return self.given_stop_strings
        return [self.end_of_turn] if self.end_of_turn else []

    def prompt(self, title: str) -> str:
        """What the model is given for a title (everything up to the description)."""
        if self.format == "plain":
            return self._instruction.format(title=title)
        return title.join(self._prompt_pieces)

    def response(self, content: str) -> str:
        """What the model learns to answer: the description and what closes it."""
        if self.format == "plain":
            return self._response.format(content=content)
        return content.join(self._response_pieces)

    def text(self, title: str, content: str) -> str:
        """One full training text: the prompt followed by the response."""
        return self.prompt(title) + self.response(content)

    def check(self, title: str, content: str) -> None:
        """Raise PromptFormatError when text(title, content) differs from the chat template's own rendering
        of this row (a template that changes the text it is given: the pieces cannot stand in for it)."""
        if self.format != "chat_template":
            return
        _, full = _render(
            self._tokenizer, self._instruction.format(title=title), self._response.format(content=content)
        )
        expected = _without_added_bos(self._tokenizer, full).rstrip()
        if self.text(title, content) != expected:
            raise PromptFormatError(
                f"the chat template changes the text it is given (title {title!r}): rendered {expected!r}, "
                f"filled in {self.text(title, content)!r}; use prompt.format: plain"
            )


def _render(tokenizer, user: str, assistant: str) -> tuple[str, str]:
    """(the conversation up to and including the generation prompt, the whole conversation), as text."""
    messages = [{"role": "user", "content": user}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": assistant}], tokenize=False)
    return prompt, full


def _without_added_bos(tokenizer, text: str) -> str:
    """`text` without a leading BOS when the tokenizer adds one itself (every stage encodes with the
    tokenizer's special tokens: the template's BOS would be a second one)."""
    bos = tokenizer.bos_token
    if bos and text.startswith(bos):
        ids = tokenizer("x", add_special_tokens=True)["input_ids"]
        if ids and ids[0] == tokenizer.bos_token_id:
            return text[len(bos) :]
    return text


def _chat_pieces(tokenizer, instruction: str, response: str):
    """The prompt's and the response's (before, after) pieces and the end-of-turn text, from one rendering
    of the chat template with stand-ins for the title and the description."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise PromptFormatError(
            "prompt.format is chat_template but the model's tokenizer has no chat template: use an instruct "
            "model whose tokenizer has one, or prompt.format: plain"
        )
    user, assistant = instruction.format(title=_TITLE_MARK), response.format(content=_CONTENT_MARK)
    prompt, full = _render(tokenizer, user, assistant)
    if not full.startswith(prompt):
        raise PromptFormatError(
            "the chat template renders the conversation differently once the answer is added, so the prompt "
            f"is not a prefix of the training text (prompt {prompt!r}, conversation {full!r}): use prompt.format: plain"
        )
    answer = full[len(prompt) :]
    prompt = _without_added_bos(tokenizer, prompt)
    if _TITLE_MARK not in prompt or _CONTENT_MARK not in answer:
        raise PromptFormatError(
            "the chat template does not show the title in the prompt and the description in the answer "
            f"(prompt {prompt!r}, answer {answer!r})"
        )
    # What the template adds after the answer: its end-of-turn token, then (a newline) what separates it from
    # a next turn, which a training text never has.
    template_suffix = answer.rsplit(_CONTENT_MARK, 1)[1].removeprefix(assistant.rsplit(_CONTENT_MARK, 1)[1])
    end_of_turn = template_suffix.strip() or tokenizer.eos_token
    return prompt.split(_TITLE_MARK), answer.rstrip().split(_CONTENT_MARK), end_of_turn


def cut_at_stop(text: str, stop_strings: list[str]) -> str:
    """Cut generated text at the first stop string (the end of the model's turn) and strip it."""
    cut = len(text)
    for stop in stop_strings:
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    return text[:cut].strip()
