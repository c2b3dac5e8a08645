"""Prompt formats: the seed's plain tags unchanged, the tokenizer's chat template rendered, masked and stopped
exactly, and a clear error where a tokenizer has no chat template."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from ftpipe.modeling import load_tokenizer
from ftpipe.prompts import PromptFormat, PromptFormatError
from tests.conftest import PROMPT

CHAT_INSTRUCTION = "Write a product description for: {title}"
TITLES = ["Girls Ballet Tutu Neon Pink", "Stainless Steel French Press {34 oz}"]
CONTENTS = ["A bright pink tutu for dance class.", "Brews 8 cups; double-walled {keeps heat}."]
# A Gemma-like template whose end of turn is plain text, not the EOS token: stopping must come from the template.
TEXT_END_TEMPLATE = (
    "{% for m in messages %}<start>{{ m['role'] }}\n{{ m['content'] }}[END]\n{% endfor %}"
    "{% if add_generation_prompt %}<start>assistant\n{% endif %}"
)


def rendered(tokenizer, title: str, content: str | None = None, instruction: str = CHAT_INSTRUCTION) -> str:
    messages = [{"role": "user", "content": instruction.format(title=title)}]
    if content is None:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    messages.append({"role": "assistant", "content": content})
    return tokenizer.apply_chat_template(messages, tokenize=False)


def test_plain_format_is_the_templates_as_written():
    prompt_format = PromptFormat(PROMPT, "{content}<eos>", "plain", ["<end_of_turn>", "<eos>"])
    for title, content in zip(TITLES, CONTENTS, strict=True):
        assert prompt_format.prompt(title) == PROMPT.format(title=title)
        assert prompt_format.text(title, content) == PROMPT.format(title=title) + f"{content}<eos>"
    assert prompt_format.stop_strings == ["<end_of_turn>", "<eos>"]
    # Without stop strings: what the response template puts after the description.
    assert PromptFormat(PROMPT, "{content}<eos>").stop_strings == ["<eos>"]


def test_chat_template_renders_prompt_and_answer_with_the_tokenizers_template(tokenizer_dir):
    tokenizer = load_tokenizer(str(tokenizer_dir))  # SmolLM2-135M-Instruct's: ChatML
    prompt_format = PromptFormat(CHAT_INSTRUCTION, "{content}", "chat_template", None, tokenizer)
    for title, content in zip(TITLES, CONTENTS, strict=True):
        assert prompt_format.prompt(title) == rendered(tokenizer, title)
        assert prompt_format.prompt(title).endswith("<|im_start|>assistant\n")
        # The whole conversation, without the newline that would separate it from a next turn.
        assert prompt_format.text(title, content) == rendered(tokenizer, title, content).rstrip()
        assert prompt_format.response(content) == f"{content}<|im_end|>"
        prompt_format.check(title, content)
    assert prompt_format.stop_strings == ["<|im_end|>"]
    # Stop strings the user sets are kept.
    assert PromptFormat(CHAT_INSTRUCTION, "{content}", "chat_template", ["###"], tokenizer).stop_strings == ["###"]


def test_chat_template_without_a_template_is_one_clear_error(tokenizer_dir):
    tokenizer = load_tokenizer(str(tokenizer_dir))
    tokenizer.chat_template = None
    with pytest.raises(PromptFormatError, match="has no chat template"):
        PromptFormat(CHAT_INSTRUCTION, "{content}", "chat_template", None, tokenizer)


def tokenize_catalog(tmp_path, model_dir, **templates) -> tuple:
    """The tiny catalog's prepared splits tokenized with `templates`: (the rows of the train split, the
    train split's tokenized examples, tokenize's stats)."""
    import datasets
    from make_catalog import generate_records, write_jsonl
    from prepare import prepare
    from tokenize_data import build_parser, tokenize

    from ftpipe.stage import namespace
    from tests.test_prepare import args_for

    write_jsonl(tmp_path / "trn.json", generate_records(40, seed=3))
    prepare(args_for(tmp_path / "trn.json", tmp_path))
    splits = {s: str(tmp_path / f"{s}.jsonl") for s in ("train", "validation", "test")}
    values = dict(model_dir=str(model_dir), dataset=str(tmp_path / "tok"), stats=str(tmp_path / "tok.json"))
    stats = tokenize(namespace(build_parser(), **splits, **values, **templates))
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    return rows, datasets.load_from_disk(str(tmp_path / "tok"))["train"], stats


def test_prepare_writes_no_prompt(tmp_path, tokenizer_dir):
    rows, _, _ = tokenize_catalog(tmp_path, tokenizer_dir, instruction_template=PROMPT, response_template="{content}")
    assert rows and all("prompt" not in row and "text" not in row for row in rows)


def test_completion_only_masks_exactly_the_rendered_chat_prompt(tmp_path, tokenizer_dir):
    tokenizer = load_tokenizer(str(tokenizer_dir))
    rows, examples, stats = tokenize_catalog(
        tmp_path,
        tokenizer_dir,
        prompt_format="chat_template",
        instruction_template=CHAT_INSTRUCTION,
        response_template="{content}",
        max_len=512,
    )
    assert stats["train"]["examples_out"] == len(rows) == len(examples)
    for row, example in zip(rows, examples, strict=True):
        ids, labels = example["input_ids"], example["labels"]
        prompt_ids = tokenizer(rendered(tokenizer, row["title"]))["input_ids"]
        masked = sum(label == -100 for label in labels)
        assert masked == len(prompt_ids) and ids[:masked] == prompt_ids
        assert labels[masked:] == ids[masked:]
        # The answer is the description and the template's end of turn, once (it is the EOS token here).
        assert tokenizer.decode(ids[masked:]) == f"{row['content']}<|im_end|>"
        assert ids[-1] == tokenizer.eos_token_id and ids[-2] != tokenizer.eos_token_id


def test_tokenize_stops_on_a_tokenizer_without_chat_template(tmp_path, tokenizer_dir):
    tokenizer = load_tokenizer(str(tokenizer_dir))
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path / "no_template")
    with pytest.raises(SystemExit, match="tokenize: prompt.format is chat_template but the model's tokenizer has no"):
        tokenize_catalog(
            tmp_path,
            tmp_path / "no_template",
            prompt_format="chat_template",
            instruction_template=CHAT_INSTRUCTION,
            response_template="{content}",
        )


def chain_model(tokenizer, chain: list[int]):
    """A 1-layer Llama whose greedy next token after chain[i] is chain[i + 1]: its layers add nothing to the
    residual stream, each chain token's embedding is its own direction, and the output head maps that
    direction to the next token."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    assert len(set(chain)) == len(chain) < config.hidden_size
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for step, (token, following) in enumerate(itertools.pairwise(chain)):
            model.model.embed_tokens.weight[token, step] = 1.0
            model.lm_head.weight[following, step] = 100.0
    return model


def test_generation_stops_at_the_templates_end_of_turn(tokenizer_dir):
    from ftpipe.generation import generate_new_ids, generate_texts

    tokenizer = load_tokenizer(str(tokenizer_dir))
    tokenizer.chat_template = TEXT_END_TEMPLATE
    prompt_format = PromptFormat(CHAT_INSTRUCTION, "{content}", "chat_template", None, tokenizer)
    assert prompt_format.stop_strings == ["[END]"]
    prompt = prompt_format.prompt(TITLES[0])
    answer = tokenizer("Nice tutu", add_special_tokens=False)["input_ids"]
    end = tokenizer("[END]", add_special_tokens=False)["input_ids"]
    after = tokenizer(" extra words", add_special_tokens=False)["input_ids"]
    model = chain_model(tokenizer, [tokenizer(prompt)["input_ids"][-1], *answer, *end, *after])
    settings = dict(max_new_tokens=20, do_sample=False, temperature=1.0, top_p=1.0, repetition_penalty=1.0, seed=0)
    # Without a stop string the model goes on past the end of turn; with the format's, it stops there.
    (unstopped,) = generate_new_ids(model, tokenizer, [prompt], {**settings, "stop_strings": []}, 1)
    assert tokenizer.decode(unstopped).startswith("Nice tutu[END] extra words")
    (stopped,) = generate_new_ids(
        model, tokenizer, [prompt], {**settings, "stop_strings": prompt_format.stop_strings}, 1
    )
    assert stopped.tolist() == [*answer, *end]
    assert generate_texts(model, tokenizer, [prompt], {**settings, "stop_strings": prompt_format.stop_strings}, 1) == [
        "Nice tutu"
    ]


def test_a_templates_bos_is_not_doubled_when_the_tokenizer_adds_one(tokenizer_dir):
    from tokenizers.processors import TemplateProcessing

    tokenizer = load_tokenizer(str(tokenizer_dir))
    bos = (tokenizer.bos_token, tokenizer.bos_token_id)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(single=f"{bos[0]} $A", special_tokens=[bos])
    tokenizer.chat_template = "{{ bos_token }}" + TEXT_END_TEMPLATE
    prompt_format = PromptFormat(CHAT_INSTRUCTION, "{content}", "chat_template", None, tokenizer)
    prompt = prompt_format.prompt(TITLES[0])
    assert prompt == rendered(tokenizer, TITLES[0]).removeprefix(bos[0]) and not prompt.startswith(bos[0])
    ids = tokenizer(prompt_format.text(TITLES[0], CONTENTS[0]))["input_ids"]
    assert ids[0] == bos[1] and ids[1] != bos[1]
    prompt_format.check(TITLES[0], CONTENTS[0])


def test_a_template_that_changes_its_text_is_refused(tokenizer_dir):
    tokenizer = load_tokenizer(str(tokenizer_dir))
    tokenizer.chat_template = TEXT_END_TEMPLATE.replace("m['content']", "m['content'] | upper")
    with pytest.raises(PromptFormatError, match="does not show the title"):
        PromptFormat(CHAT_INSTRUCTION, "{content}", "chat_template", None, tokenizer)
    tokenizer.chat_template = TEXT_END_TEMPLATE.replace("m['content']", "m['content'] | trim")
    prompt_format = PromptFormat(CHAT_INSTRUCTION, "{content}", "chat_template", None, tokenizer)
    prompt_format.check(TITLES[0], CONTENTS[0])
    with pytest.raises(PromptFormatError, match="changes the text it is given"):
        prompt_format.check("Tutu ", CONTENTS[0])  # the template trims the message; the pieces cannot
