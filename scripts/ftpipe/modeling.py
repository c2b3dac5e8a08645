"""Loading the base model, its tokenizer and the LoRA adapter, on a GPU when there is one."""

from __future__ import annotations

import logging

import torch

from ftpipe.settings import default

log = logging.getLogger("ftpipe")

DEFAULT_QUANTIZATION = default("train.quantization")  # config.yaml's (the seed notebook's NF4 with double quant)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that support it, fp16 on older GPUs, float32 on the CPU."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def enable_tf32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def load_tokenizer(model_dir: str, padding_side: str = "right"):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def bnb_config(quantization: dict, dtype: torch.dtype):
    """A BitsAndBytesConfig from the config's `quantization` block, or None for a 16/32-bit base."""
    if not quantization.get("load_in_4bit", False):
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization.get("quant_type", "nf4"),
        bnb_4bit_use_double_quant=quantization.get("double_quant", True),
        bnb_4bit_compute_dtype=dtype,
    )


def load_base_model(model_dir: str, quantization: dict, device: torch.device, dtype: torch.dtype):
    """The base model from a local folder (safetensors only, no remote code), quantized as configured."""
    from transformers import AutoModelForCausalLM

    quant = bnb_config(quantization, dtype)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=dtype,
        quantization_config=quant,
        device_map={"": device.index if device.type == "cuda" and device.index is not None else device.type},
        use_safetensors=True,
        trust_remote_code=False,
        local_files_only=True,
    )
    if quant is not None and device.type == "cpu":
        keep_trainable_cpu_layout(model)
    log.info("loaded %s on %s (%s, 4-bit=%s)", model_dir, device, dtype, quant is not None)
    return model


def keep_trainable_cpu_layout(model) -> None:
    """Stop bitsandbytes from repacking 4-bit weights into its CPU inference layout.

    On CPUs with AVX512-BF16 it does that at the first forward pass in eval mode without gradients (an
    evaluation), and the repacked layer has no backward: training after it would get silently wrong
    gradients (torch warns "gemv_4bit: an autograd kernel was not registered")."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def load_for_inference(model_dir: str, quantization: dict, device: torch.device):
    """The base model for generation and scoring: quantized as in training, then dequantized once, which
    computes the same numbers as the 4-bit layers and runs generation several times faster."""
    dtype = compute_dtype(device)
    model = load_base_model(model_dir, quantization, device, dtype)
    dequantize_base(model, dtype)
    return model.eval()


def merge_adapter(model, adapter_dir: str):
    """Fold the LoRA adapter into the (dequantized) base weights: W + s·B·A, one matmul per projection at
    generation time instead of three. The adapter was trained on exactly these dequantized weights, so the
    merged model is the trained model (16-bit on a GPU: rounded once to bf16; float32 on a CPU). The base's
    weights are changed in place: generate the base variants first."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir, local_files_only=True).merge_and_unload().eval()


def lora_config(lora: dict):
    from peft import LoraConfig

    return LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=list(lora["target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
    )


def dequantize_base(model, dtype: torch.dtype) -> int:
    """Replace every 4-bit linear layer by a frozen 16/32-bit one holding its dequantized weights.

    The 4-bit path dequantizes the same NF4 weights to the compute dtype on every matmul; doing it once
    gives the same numbers and much faster steps, at the memory cost of 16-bit weights. Call it before the
    first forward pass (on the CPU, bitsandbytes repacks the weights at the first one). Returns the count.
    """
    import bitsandbytes as bnb

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, bnb.nn.Linear4bit):
                continue
            weight = bnb.functional.dequantize_4bit(child.weight.data, child.weight.quant_state).to(dtype)
            # On the meta device: no random initialization (which would shift the seeded LoRA init) or memory.
            linear = torch.nn.Linear(child.in_features, child.out_features, bias=False, device="meta", dtype=dtype)
            linear.weight = torch.nn.Parameter(weight, requires_grad=False)
            if child.bias is not None:
                linear.bias = torch.nn.Parameter(child.bias.data.to(dtype), requires_grad=False)
            setattr(parent, name, linear)
            replaced += 1
    if replaced:
        # The model is no longer 4-bit: let PEFT and transformers treat it as a plain frozen model.
        model.is_loaded_in_4bit = False
        model.is_quantized = False
        model.hf_quantizer = None
    return replaced
