"""The agent loop: chat with the model, run the tools it asks for, repeat."""

import json
import sys

import prompts
import tools
from llm import chat


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def run_agent(task, workdir, max_steps=None):
    """Works on `task` in `workdir` until the model stops calling tools; returns its last words."""
    messages = [
        {"role": "system", "content": prompts.SYSTEM},
        {"role": "user", "content": task},
    ]
    for step in range(max_steps or prompts.MAX_STEPS):
        reply = chat(messages, tools=tools.SCHEMAS)
        choices = reply.get("choices") or [{}]
        message = choices[0].get("message") or {}
        calls = message.get("tool_calls") or []
        messages.append(
            {"role": "assistant", "content": message.get("content"), **({"tool_calls": calls} if calls else {})}
        )
        if not calls:
            return message.get("content") or ""
        for call in calls:
            function = call.get("function") or {}
            try:
                args = json.loads(function.get("arguments") or "{}")
            except ValueError:
                args = {}
            result = tools.run(function.get("name", ""), args, workdir)
            log("step %d: %s -> %s" % (step, function.get("name"), result.splitlines()[0] if result else ""))
            messages.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": result})
    return "stopped after %d steps" % (max_steps or prompts.MAX_STEPS)
