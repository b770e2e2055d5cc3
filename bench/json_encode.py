#!/usr/bin/env python3
"""json_encode against Python's plain C encoder, on the values the hot paths write.

    python bench/json_encode.py

json_encode adds, over the C encoder: the refusal of NaN and Infinity (the encoder's own check),
a test for text in which a float could sit, and the rewrite of floats in the JS form, which
only values holding a float pay. Figures are the best of 25 runs, in microseconds per call.
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daycare.storage.json_values import frozen, json_encode

plain = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
VALUES = {
    "agent descriptor": {
        "type": "permanent",
        "id": "itb79wggysgcntostnd4tcsu",
        "name": "Agent 1e5",
        "description": "A permanent agent that answers.",
        "systemPrompt": "You are a helpful agent. Version 2.5 of the prompt.",
    },
    "agent permissions": {"workingDir": "/home/daycare/agent", "writeDirs": ["/home/daycare/agent", "/tmp"]},
    "empty stats": {},
    "history note": {"text": "note 1234 for agent a1e5x"},
    "inbox item": {
        "type": "message",
        "message": {"text": "hello there, this is a message with some text in it", "files": []},
        "context": {"messageId": "m-1", "channelId": "c-1"},
    },
    "tokens (with floats)": {
        "provider": "openai",
        "model": "gpt-4.1",
        "size": {"input": 1234, "output": 56, "cacheRead": 0, "cacheWrite": 0, "total": 1290},
        "cost": 0.0123,
    },
}


def best(encode: Callable[[Any], str], value: Any, number: int = 20_000, runs: int = 25) -> float:
    return min(timeit.repeat(lambda: encode(value), number=number, repeat=runs)) / number * 1e6


def main() -> None:
    print(f"{'value':22} {'C encoder':>10} {'json_encode':>12}")
    for name, value in VALUES.items():
        shared = frozen(value)
        print(f"{name:22} {best(plain, shared):8.2f} us {best(json_encode, shared):9.2f} us")


if __name__ == "__main__":
    main()
