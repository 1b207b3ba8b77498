"""The agent's tools: bash and a file editor, confined to its work directory."""

import os
import subprocess

OUTPUT_CAP = 10_000

SCHEMAS = [
    {
        "type": "function",
        "function": {
            "name": "bash",
            "description": "Run a shell command in the work directory; returns stdout and stderr.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "edit",
            "description": "view a file, create it with file_text, or str_replace old_str (exactly once) with new_str.",
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "string", "enum": ["view", "create", "str_replace"]},
                    "path": {"type": "string"},
                    "file_text": {"type": "string"},
                    "old_str": {"type": "string"},
                    "new_str": {"type": "string"},
                },
                "required": ["command", "path"],
            },
        },
    },
]


def _cap(text):
    return text if len(text) <= OUTPUT_CAP else text[:OUTPUT_CAP] + "\n[output truncated]"


def bash(command, workdir, timeout=60):
    try:
        done = subprocess.run(
            ["sh", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "error: the command timed out after %ds" % timeout
    return _cap("exit %d\n%s%s" % (done.returncode, done.stdout, done.stderr))


def _inside(workdir, path):
    full = os.path.realpath(os.path.join(workdir, path))
    root = os.path.realpath(workdir)
    if full != root and not full.startswith(root + os.sep):
        raise ValueError("%s is outside the work directory" % path)
    return full


def edit(args, workdir):
    try:
        path = _inside(workdir, args.get("path", ""))
        command = args.get("command")
        if command == "view":
            with open(path) as f:
                return _cap(f.read())
        if command == "create":
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w") as f:
                f.write(args.get("file_text", ""))
            return "created " + args["path"]
        if command == "str_replace":
            with open(path) as f:
                text = f.read()
            old = args.get("old_str", "")
            count = text.count(old) if old else 0
            if count != 1:
                return "error: old_str occurs %d times in %s; it must occur exactly once" % (
                    count,
                    args["path"],
                )
            with open(path, "w") as f:
                f.write(text.replace(old, args.get("new_str", ""), 1))
            return "edited " + args["path"]
        return "error: unknown command %r" % command
    except (OSError, ValueError) as e:
        return "error: %s" % e


def run(name, args, workdir):
    if name == "bash":
        return bash(args.get("command", ""), workdir)
    if name == "edit":
        return edit(args, workdir)
    return "error: unknown tool %r" % name
