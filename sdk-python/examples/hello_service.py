"""A tiny Mehr service in pure Python: three functions, served from this process.

    python hello_service.py          # serve until Ctrl-C (then the functions are unregistered)
    python hello_service.py --demo   # serve, call each function once, print, stop

It connects to the local daemon (set MEHR_DATA_DIR, or MEHR_ENDPOINT and MEHR_TOKEN, to reach
another one). From another shell, while it serves:

    mehr invoke greet --input name.txt
"""

from __future__ import annotations

import asyncio
import sys

import mehr


@mehr.function("greet", description="Says hello to the name it is given", max_concurrency=8)
def greet(name: str) -> str:
    return f"Hello, {name.strip() or 'stranger'}!"


@mehr.function("word-stats", max_concurrency=4, price_umhr=1)
async def word_stats(text: str) -> dict:
    """Counts the words and characters of a text."""
    await asyncio.sleep(0)  # an async handler runs on an event loop: it may await I/O here
    words = text.split()
    return {"words": len(words), "characters": len(text), "longest": max(words, key=len, default="")}


@mehr.function("countdown")
def countdown(start: str, call: mehr.Call):
    """Streams the numbers from START down to 1, one partial output each."""
    for n in range(int(start), 0, -1):
        if call.cancelled:
            return
        yield f"{n}\n"


def demo() -> None:
    client = mehr.connect()
    with client.serve(greet, word_stats, countdown) as serving:
        print("serving", ", ".join(serving.functions), "on node", client.info().node_id)
        print(client.invoke("greet", "Ada").text())
        print(client.invoke("word-stats", "the quick brown fox").json())
        print("countdown:", " ".join(chunk.decode().strip() for chunk in client.invoke_stream("countdown", "3")))
    print("stopped; still offered:", [f.function_id for f in client.functions()])


if __name__ == "__main__":
    if "--demo" in sys.argv[1:]:
        demo()
    else:
        print("serving greet, word-stats, countdown; Ctrl-C to stop", flush=True)
        mehr.run(greet, word_stats, countdown)
        print("stopped", flush=True)
