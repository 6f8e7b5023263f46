"""Apps for the event-loop watchdog and loop-lag tests: handlers that block the loop.

``/sleep?s=0.5`` blocks in ``time.sleep`` (the GIL released), ``/spin?s=0.5`` in a CPU loop
(the GIL held, released between bytecodes to threads that ask), ``/regex?n=25`` in one C call
that holds the GIL throughout (a regex backtracking 2**n ways); each prints ``BLOCKING KEY``
first when given ``key=KEY``. Anything else answers at once.
"""

import re
import sys
import time
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode())
    seconds = float(query.get("s", ["0"])[0])
    if "key" in query:
        print(f"BLOCKING {query['key'][0]}", file=sys.stderr, flush=True)
    if scope["path"] == "/sleep":
        time.sleep(seconds)  # blocks the event loop: the watchdog names this line
    elif scope["path"] == "/spin":
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # a CPU loop holding the GIL
            pass
    elif scope["path"] == "/regex":
        n = int(query["n"][0])
        re.match(r"(a+)+$", "a" * n + "b")  # one C call, the GIL held all along
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
