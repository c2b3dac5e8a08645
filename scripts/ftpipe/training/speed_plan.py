"""The training stage's speed plan: which levers are on for this run, and applying the compile levers.

`resolve_plan` turns the recipe (micro-batch, accumulation, checkpointing) and the `train.speed` levers into
one dict, the plan, that the rest of training reads (and that timing.json records); `compile_model` and
`autocast` apply the compile and mixed-precision levers. Every key of `train.speed` but `enabled` and
`micro_batch` is a lever (declared in the schema, its default in config.yaml): a new lever is that declaration,
a line in `resolve_plan` where it depends on others, and its use where the plan is read (docs/developing.md).
"""

from __future__ import annotations

import logging

import torch

from ftpipe import settings
from ftpipe.compile_cache import use_compile_cache
from ftpipe.training.dropout_lora import fuse_dropout_lora_layers
from ftpipe.training.fp8_base import fp8_base_layers, fp8_unavailable
from ftpipe.training.fused_lora import fuse_lora_layers

log = logging.getLogger("ftpipe.train")


def configured_speed(speed: dict | None) -> dict:
    """train.speed as configured: config.yaml's, a partial mapping (a benchmark's) changing only its keys."""
    return {**settings.default("train.speed"), **(speed or {})}


def largest_divisor_at_most(number: int, limit: int) -> int:
    return max(d for d in range(1, min(number, max(limit, 1)) + 1) if number % d == 0)


def resolve_plan(args, device: torch.device, world: int = 1) -> dict:
    """The recipe as configured, with the speed levers applied where they are on (by default: on GPUs).

    The effective batch (micro-batch x accumulation) stays as configured: with several ranks, each does
    its share, micro-batch x accumulation x ranks = the configured effective batch."""
    speed = configured_speed(args.speed)
    levers_on = device.type == "cuda" if speed["enabled"] == "auto" else bool(speed["enabled"])
    effective = args.micro_batch * args.grad_accum
    if effective % world:
        raise SystemExit(f"train: the effective batch {effective} does not divide among {world} processes")
    per_rank = effective // world
    micro = largest_divisor_at_most(
        per_rank, speed["micro_batch"] if levers_on and speed["micro_batch"] else args.micro_batch
    )
    plan = {"speed_levers": levers_on, "world_size": world, "micro_batch": micro, "grad_accum": per_rank // micro}
    # Every other key of train.speed is a lever. Off, a lever that is also a recipe setting (gradient
    # checkpointing, the fp32 upcast) takes the recipe's value; any other is off (false). `auto` values are
    # resolved below, for this device and model settings.
    for lever, value in speed.items():
        if lever not in ("enabled", "micro_batch"):
            plan[lever] = value if levers_on else getattr(args, lever, False)
    plan["levers_off"] = {}  # lever -> why this model cannot take it (auto levers only; set when applied)
    if not plan["compile"]:
        plan["compile_scope"] = None
    plan["compile_loss"] = plan["compile_loss"] and plan["compile_scope"] == "layers"  # "model" includes it
    plan["cuda_graphs"] = plan["cuda_graphs"] and plan["compile"] and device.type == "cuda"
    plan["fp8_base"] = fp8_base_plan(plan["fp8_base"], args, plan, device)
    plan["fused_lora"] = fused_lora_plan(plan["fused_lora"], args, plan)
    plan["fused_dropout_lora"] = fused_dropout_lora_plan(plan["fused_dropout_lora"], args, device)
    return plan


def fused_dropout_lora_plan(wanted, args, device: torch.device) -> bool:
    """The fused dropout + LoRA down-projection replaces PEFT's dropout, so it needs LoRA dropout > 0. `auto`
    takes it on GPUs (Triton kernels); `true` also elsewhere (the plain path) and stops where impossible."""
    if wanted == "auto":
        return bool(args.lora["dropout"]) and device.type == "cuda"
    if not wanted:
        return False
    if not args.lora["dropout"]:
        raise SystemExit(
            "train: speed.fused_dropout_lora needs lora.dropout > 0 (with dropout 0 there is no mask to fuse, and "
            "fused_lora folds the LoRA into the weight instead). Set speed.fused_dropout_lora: false."
        )
    return True


def fp8_base_plan(wanted, args, plan: dict, device: torch.device) -> bool:
    """The FP8 base needs FP8 tensor cores and 16-bit base weights to quantize, and leaves the LoRA apart (so
    not with fused_lora: true). `auto` takes it where possible and logs why not; `true` stops with the reason."""
    if not wanted:
        return False
    four_bit = args.quantization.get("load_in_4bit") and not plan["dequantize_base"]
    reason = fp8_unavailable(device) or (
        "the base stays 4-bit (speed.dequantize_base: false)"
        if four_bit
        else "speed.fused_lora: true merges the LoRA into a 16-bit weight"
        if plan["fused_lora"] is True
        else None
    )
    if reason and wanted == "auto":
        log.info("fp8_base off: %s", reason)
        return False
    if reason:
        raise SystemExit(f"train: speed.fp8_base: true is not possible: {reason}. Set speed.fp8_base: auto or false.")
    return True


def fused_lora_plan(wanted, args, plan: dict) -> bool:
    """The merged LoRA path computes x (W + s B A)^T: no dropout on the LoRA input, and W in 16/32 bits.
    `auto` takes it where possible (not beside the FP8 base); `true` stops with the reason where it is not."""
    four_bit = args.quantization.get("load_in_4bit") and not plan["dequantize_base"]
    if wanted == "auto":
        return not args.lora["dropout"] and not four_bit and not plan["fp8_base"]
    if not wanted:
        return False
    if args.lora["dropout"]:
        raise SystemExit(
            f"train: speed.fused_lora needs lora.dropout 0, not {args.lora['dropout']}: dropout applies to the "
            "LoRA input only, which a merged weight cannot do. Set lora.dropout: 0 or speed.fused_lora: auto."
        )
    if four_bit:
        raise SystemExit(
            "train: speed.fused_lora needs the base weights in 16 bits: set speed.dequantize_base: true "
            "(or speed.fused_lora: auto for the 4-bit low-memory setting)."
        )
    return True


def turn_off(plan: dict, lever: str, reason: str) -> None:
    """A lever on in the plan that this model cannot take: off, with the reason logged and kept in the plan."""
    log.warning("speed.%s turned off: %s", lever, reason)
    plan["levers_off"][lever] = reason


def apply_fused_lora(model, plan: dict, speed: dict | None) -> None:
    """Switch the LoRA layers to the fused path the plan holds (fused_lora or fused_dropout_lora). Where a layer
    cannot take it (another layer type, DoRA...), a lever set to `auto` is turned off with the reason and one
    set to true stops the stage; the layers are checked before any is switched, so a run never mixes paths."""
    fusers = {"fused_lora": fuse_lora_layers, "fused_dropout_lora": fuse_dropout_lora_layers}
    for lever, fuse in fusers.items():
        if not plan[lever]:
            continue
        try:
            log.info("%s: %d LoRA layers", lever, fuse(model))
        except ValueError as err:
            if configured_speed(speed)[lever] is True:
                raise SystemExit(f"train: speed.{lever}: {err}") from None
            plan[lever] = False
            turn_off(plan, lever, str(err))


def apply_fp8_base(model, plan: dict, speed: dict | None, dtype: torch.dtype) -> None:
    """Put the frozen base of every LoRA layer on FP8 where the plan holds it; where a layer cannot take it (a
    4-bit base left as it is), `auto` is turned off with the reason and `true` stops the stage."""
    if not plan["fp8_base"]:
        return
    try:
        log.info("fp8_base: %d frozen linear layers run their matmuls in e4m3", fp8_base_layers(model, dtype))
    except ValueError as err:
        if configured_speed(speed)["fp8_base"] is True:
            raise SystemExit(f"train: speed.fp8_base: {err}") from None
        plan["fp8_base"] = False
        turn_off(plan, "fp8_base", str(err))


def decoder_layers(model) -> list[torch.nn.Module]:
    """The model's repeated blocks, found by the class names transformers lists in `_no_split_modules`
    (LlamaDecoderLayer, Phi3DecoderLayer, ...)."""
    layer_classes = set(getattr(model.get_base_model(), "_no_split_modules", None) or [])
    return [module for module in model.modules() if type(module).__name__ in layer_classes]


def start_compiler(plan: dict, device: torch.device) -> None:
    """Before the model loads, when the plan compiles: point the compiler at the workflow's cache (compiled
    graphs found again by later jobs and runs) and start Inductor's compile workers. torch starts them at the
    first compiled call, and each imports torch before it can build a kernel (seconds), so the first step
    waited for them; started here, they get ready while the model loads."""
    if not plan["compile"]:
        return
    use_compile_cache(device)
    try:
        from torch._inductor.async_compile import maybe_warm_pool
    except ImportError:  # a torch without it: the workers start at the first compiled call
        return
    maybe_warm_pool()


def compile_model(model, plan: dict):
    """torch.compile the whole model, or each decoder layer in place: the layers are alike, so one
    compilation serves all of them and the warm-up is a fraction of the whole model's. With CUDA graphs,
    each compiled graph is replayed instead of launching its kernels one by one from Python. With
    `compile_loss`, the cross-entropy is compiled too: transformers copies the logits to float32 first,
    the compiled loss reads them once. Call start_compiler first."""
    mode = "reduce-overhead" if plan["cuda_graphs"] else None
    layers = decoder_layers(model) if plan["compile_scope"] == "layers" else []
    if plan["compile_scope"] == "layers" and not layers:
        plan["compile_scope"], plan["compile_loss"] = "model", False
        turn_off(
            plan,
            "compile_scope",
            "no decoder layer class in the model's _no_split_modules: the whole model is compiled",
        )
    if plan["compile_loss"]:
        base = model.get_base_model()
        base.loss_function = torch.compile(base.loss_function, mode=mode)
    if plan["cuda_graphs"]:
        # Each forward starts a new "step" for the graphs' memory: no output of the last one is read again.
        model.register_forward_pre_hook(lambda *_: torch.compiler.cudagraph_mark_step_begin())
    if plan["compile_scope"] == "model":
        return torch.compile(model, mode=mode)
    for layer in layers:
        layer.compile(mode=mode)
    return model


def autocast(device, plan: dict):
    """bf16 autocast (fp16 where bf16 is missing) when mixed precision is on; the LoRA weights stay float32."""
    bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16 if bf16 else torch.float16, enabled=plan["mixed_precision"])
