"""A compile cache the workflow owns, so torch.compile's work is paid once per machine kind, not once per job.

torch.compile's Inductor keeps the compiled kernels of each graph (FX-graph cache), the traced forward and
backward graphs (AOT autograd cache), its autotuning results and Triton's binaries on disk, keyed by the
graph, its shapes, the compiler's settings and versions. By default that is a folder under /tmp of the
machine (gone with a fresh node, or on another node of a cluster); here it is a folder of the workflow,
`.snakemake/compile_cache/<torch version>_<GPU name>/` under the working directory, so that the second job
with the same shapes (another run, another training setting, the same stage again) and the second run of
the workflow start warm. Outputs do not change: a cache hit loads the same kernels the compiler would build.
A TORCHINDUCTOR_CACHE_DIR set by the user or a cluster profile (not torch's default) is left as it is.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

log = logging.getLogger("ftpipe.compile_cache")

DEFAULT_ROOT = Path(".snakemake") / "compile_cache"


def cache_key(device: torch.device) -> str:
    """torch's version and the GPU's name, as a folder name: kernels built for one do not serve the other."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{torch.__version__}_{name}").strip("_")


def use_compile_cache(device: torch.device, root: Path = DEFAULT_ROOT) -> Path:
    """Point Inductor's caches (Triton's binaries are kept inside them) at `root`/<key> unless a cache folder is
    already set, and make sure the FX-graph and AOT autograd caches are on. Call before the first torch.compile
    runs. Returns the folder in use."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    # torch writes its default (/tmp/torchinductor_<user>) into the environment the first time it asks, so
    # that value counts as unset.
    if chosen and chosen != default_cache_dir():
        folder = Path(chosen)
    else:
        folder = (root / cache_key(device)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    # The environment is read when these modules are imported; they may have been imported already.
    inductor_config.fx_graph_cache = os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
    functorch_config.enable_autograd_cache = os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] == "1"
    log.info("compile cache: %s", folder)
    return folder
