"""The `llm` CLI against Keel, configured the way its documentation says
for an OpenAI-compatible server (extra-openai-models.yaml with `api_base`):
a prompt streamed (the default) and not. Then reads what the upstream
received from the mock's request log: every field the CLI sent reached it,
with only `model` rewritten; and `llm logs` recorded the usage.

usage: llm_check.py KEEL_V1_URL API_KEY MOCK_ROOT MODEL UPSTREAM_MODEL
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from checks import Checks

base_url, api_key, mock_root, model, upstream_model = sys.argv[1:6]
# The `llm` entry point installed beside this interpreter.
LLM = os.path.join(os.path.dirname(sys.executable), "llm")
checks = Checks(mock_root)
check = checks.check
mock_requests = checks.bodies
forget_requests = checks.forget_requests

home = tempfile.mkdtemp(prefix="keel-llm-")
with open(os.path.join(home, "extra-openai-models.yaml"), "w") as config:
    config.write(
        f"- model_id: keel\n  model_name: {model}\n  api_base: \"{base_url}\"\n  api_key_name: keel\n"
    )
with open(os.path.join(home, "keys.json"), "w") as keys:
    json.dump({"keel": api_key}, keys)
env = dict(os.environ, LLM_USER_PATH=home)


def llm(*args):
    return subprocess.run([LLM, *args], env=env, capture_output=True, text=True, timeout=60)


# 1. Streamed (the default), with options.
forget_requests()
run = llm("-m", "keel", "-o", "temperature", "0.5", "-o", "max_tokens", "40", "Say hello")
check("stream: exit 0", run.returncode == 0, run.stderr)
check("stream: the answer", run.stdout.startswith("Hello from the keel mock"), run.stdout)
check(
    "stream: the upstream got every field, model rewritten",
    mock_requests()
    == [
        {
            "model": upstream_model,
            "stream": True,
            "messages": [{"role": "user", "content": "Say hello"}],
            "max_tokens": 40,
            "stream_options": {"include_usage": True},
            "temperature": 0.5,
        }
    ],
    mock_requests(),
)

# 2. Not streamed, with a system prompt.
forget_requests()
run = llm("-m", "keel", "--no-stream", "-s", "Be brief", "Say hello")
check("no stream: exit 0", run.returncode == 0, run.stderr)
check("no stream: the answer", run.stdout.startswith("Hello from the keel mock"), run.stdout)
check(
    "no stream: the upstream got every field, model rewritten",
    mock_requests()
    == [
        {
            "model": upstream_model,
            "stream": False,
            "messages": [
                {"role": "system", "content": "Be brief"},
                {"role": "user", "content": "Say hello"},
            ],
        }
    ],
    mock_requests(),
)

# 3. Both answers' usage reached the CLI's log.
logs = json.loads(llm("logs", "-n", "2", "--json").stdout or "[]")
usage = [(entry["input_tokens"] or 0, entry["output_tokens"] or 0) for entry in logs]
check("logs: usage of both", len(usage) == 2 and all(i > 0 and o > 0 for i, o in usage), usage)

shutil.rmtree(home, ignore_errors=True)
checks.finish()
