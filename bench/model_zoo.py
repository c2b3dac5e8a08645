"""The causal-LM architectures the training stage is tested and benchmarked on, as transformers configs.

Each entry keeps its architecture's own features (tied embeddings, attention bias, QK-norm, soft-capping and
sliding windows, fused qkv/gate_up projections) and takes its widths from the caller: TinyLlama's for the
GPU benchmark (bench/architectures.py, about 1B parameters each), tiny ones for the CPU tests
(tests/test_architectures.py).
"""

from __future__ import annotations

# TinyLlama v1.1's widths (the reference recipe's model).
TINYLLAMA_WIDTHS = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    head_dim=64,
    max_position_embeddings=2048,
)

# Tiny widths for the CPU tests and the benchmark's smoke run: every feature, seconds a step.
TINY_WIDTHS = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=512,
)

# name: (transformers config class, the architecture's own settings)
ARCHITECTURES = {
    "llama": ("LlamaConfig", dict(tie_word_embeddings=False, rms_norm_eps=1e-5, rope_theta=10000.0)),  # TinyLlama
    "llama_tied": ("LlamaConfig", dict(tie_word_embeddings=True)),  # Llama-3.2-1B style
    "qwen2": ("Qwen2Config", dict(tie_word_embeddings=True)),  # bias on q/k/v (Qwen2.5-0.5B/1.5B tie)
    "qwen3": ("Qwen3Config", dict(tie_word_embeddings=True)),  # QK-norm (Qwen3-0.6B/1.7B tie)
    "mistral": ("MistralConfig", dict(tie_word_embeddings=False, sliding_window=4096)),
    # Soft-capped attention and logits, alternating sliding-window and global layers, GELU, tied (Gemma-2-2B).
    "gemma2": (
        "Gemma2Config",
        dict(tie_word_embeddings=True, attn_logit_softcapping=50.0, final_logit_softcapping=30.0, sliding_window=4096),
    ),
    "phi3": ("Phi3Config", dict(tie_word_embeddings=False)),  # fused qkv_proj and gate_up_proj (Phi-3-mini)
}


def model_config(name: str, vocab_size: int, bos: int | None, eos: int | None, pad: int | None = None, **widths):
    """The transformers config of architecture `name` with the given widths and vocabulary."""
    import transformers

    class_name, features = ARCHITECTURES[name]
    settings = {**features, **widths}
    if name == "gemma2":
        settings.setdefault("query_pre_attn_scalar", settings["head_dim"])
    return getattr(transformers, class_name)(
        vocab_size=vocab_size, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, **settings
    )
