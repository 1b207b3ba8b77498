"""The OpenAI chat completions API over urllib (stdlib only).

Reads OPENAI_BASE_URL (default https://api.openai.com/v1), OPENAI_API_KEY and
OPENAI_MODEL (default gpt-4o-mini) from the environment. Retries 429 and 5xx
with backoff; every call has a timeout. Never prints the key.
"""

import json
import os
import time
import urllib.error
import urllib.request


class LLMUnavailable(Exception):
    """No server configured, or it never answered."""


def chat(messages, tools=None, model=None, timeout=120, retries=4):
    base = os.environ.get("OPENAI_BASE_URL", "").rstrip("/")
    if not base and not os.environ.get("OPENAI_API_KEY"):
        raise LLMUnavailable("neither OPENAI_BASE_URL nor OPENAI_API_KEY is set")
    base = base or "https://api.openai.com/v1"
    body = {"model": model or os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), "messages": messages}
    if tools:
        body["tools"] = tools
    headers = {"Content-Type": "application/json"}
    key = os.environ.get("OPENAI_API_KEY", "")
    if key:
        headers["Authorization"] = "Bearer " + key
    data = json.dumps(body).encode()
    last = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(30, 0.5 * 2 ** (attempt - 1)))
        request = urllib.request.Request(base + "/chat/completions", data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read().decode())
        except urllib.error.HTTPError as e:
            last = "HTTP %d" % e.code
            if e.code != 429 and e.code < 500:
                break
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as e:
            last = type(e).__name__
    raise LLMUnavailable("the model did not answer (%s)" % last)
