"""Which linear layers get a LoRA adapter: `all-linear` or an explicit list, checked against the model.

Architectures name their projections differently (Llama: q_proj k_proj v_proj o_proj gate_proj up_proj
down_proj; Phi-3: qkv_proj o_proj gate_up_proj down_proj), and PEFT adapts whatever names match without a word
about those that match nothing: a Llama list on Phi-3 adapts o_proj and down_proj only. So a list is checked
before training: a name that matches no linear layer stops the stage with the names that exist, and a
projection of the decoder layers (attention or MLP) left without an adapter is a warning, in the log and on
the run's report.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("ftpipe.train")

ALL_LINEAR = "all-linear"  # PEFT's shorthand: every linear layer but the output head


def linear_layers(model) -> dict[str, torch.nn.Module]:
    """Every linear layer of the model (4-bit ones included: bitsandbytes' subclass nn.Linear) but the output
    head, by full module name."""
    head = model.get_output_embeddings()
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    }


def projection_kind(model, module_name: str) -> str:
    """attention, MLP or other: from the class of the module that holds the layer (LlamaAttention, Phi3MLP...)."""
    parent = model.get_submodule(module_name.rpartition(".")[0]) if "." in module_name else model
    holder = type(parent).__name__.lower()
    if "attention" in holder or "attn" in holder:
        return "attention"
    if "mlp" in holder or "feedforward" in holder:
        return "MLP"
    return "other"


def matches(module_name: str, target: str) -> bool:
    """PEFT's rule for a target given as a name: the module's name, or its last dotted parts."""
    return module_name == target or module_name.endswith("." + target)


def resolve_targets(model, target_modules) -> tuple[list[str], list[str]]:
    """The short names (q_proj, ...) of the linear layers to adapt, and the warnings about the choice.

    `all-linear` takes every linear layer but the output head. A list must name linear layers of this model
    (a name that matches none is a SystemExit listing the ones it has); each projection of the decoder layers
    that it leaves out gives a warning naming its kind (attention or MLP)."""
    layers = linear_layers(model)
    short_names = sorted({name.rpartition(".")[2] for name in layers})
    if target_modules == ALL_LINEAR:
        return short_names, []
    if isinstance(target_modules, str):
        raise SystemExit(f"train: lora.target_modules is {target_modules!r}: give {ALL_LINEAR!r} or a list of names")
    architecture = type(model).__name__
    unknown = [target for target in target_modules if not any(matches(name, target) for name in layers)]
    if unknown:
        raise SystemExit(
            f"train: lora.target_modules {unknown} match no linear layer of {architecture}; its linear layers are "
            f"named {short_names} (or use {ALL_LINEAR!r})"
        )
    adapted = {name for name in layers if any(matches(name, target) for target in target_modules)}
    left_out: dict[str, set[str]] = {}
    for name in sorted(set(layers) - adapted):
        kind = projection_kind(model, name)
        if kind != "other":
            left_out.setdefault(kind, set()).add(name.rpartition(".")[2])
    warnings = [
        f"lora.target_modules leaves the {kind} projections {sorted(names)} of {architecture} without an adapter "
        f"(adapted: {sorted({name.rpartition('.')[2] for name in adapted})}; {ALL_LINEAR!r} adapts every one)"
        for kind, names in sorted(left_out.items())
    ]
    for warning in warnings:
        log.warning("%s", warning)
    return sorted(set(target_modules)), warnings


def adapter_summary(model, warnings: list[str]) -> dict:
    """What timing.json and the report say about the adapter: trainable parameters, the module names that
    carry one (and how many layers), the warnings of `resolve_targets`."""
    from peft.tuners.lora import LoraLayer

    adapted = [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    trainable, total = model.get_nb_trainable_parameters()
    return {
        "trainable_parameters": trainable,
        "total_parameters": total,
        "adapted_modules": sorted({name.rpartition(".")[2] for name in adapted}),
        "adapted_layers": len(adapted),
        "warnings": warnings,
    }
