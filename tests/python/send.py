#!/usr/bin/env python3
"""Sends CloudEvents to a broker with the CloudEvents Python SDK over httpx: a sender that is
not ours, for the end-to-end tests.

    send.py URL [--mode binary|structured|batch] [--count N] [--concurrency C]
                [--type T] [--source S] [--acked FILE]

Prints one JSON object: {"statuses": {"202": n, ...}, "acked": [ids...], "errors": n}.
With --acked, also appends each acknowledged id to FILE as it is acknowledged (one per line),
so a test can kill the daemon mid-run and still know which events were accepted.
"""

import argparse
import asyncio
import json
import uuid

import httpx
from cloudevents.v1.conversion import to_binary, to_json, to_structured
from cloudevents.v1.http import CloudEvent


def event(args, n):
    attributes = {"type": args.type, "source": args.source, "id": f"{uuid.uuid4()}", "seq": str(n)}
    return CloudEvent(attributes, {"n": n, "note": "sent by the Python SDK"})


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--mode", default="binary", choices=["binary", "structured", "batch"])
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--type", default="dev.rouse.test")
    parser.add_argument("--source", default="/tests/python")
    parser.add_argument("--acked")
    args = parser.parse_args()

    statuses, acked, errors = {}, [], 0
    acked_file = open(args.acked, "a", buffering=1) if args.acked else None
    queue = asyncio.Queue()
    for n in range(args.count):
        queue.put_nowait(n)

    async with httpx.AsyncClient(timeout=30) as client:
        if args.mode == "batch":
            events = [event(args, n) for n in range(args.count)]
            body = "[" + ",".join(to_json(e).decode() for e in events) + "]"
            response = await client.post(
                args.url, content=body, headers={"content-type": "application/cloudevents-batch+json"}
            )
            statuses[str(response.status_code)] = 1
            if response.status_code == 202:
                acked = [e["id"] for e in events]
        else:
            async def worker():
                nonlocal errors
                while not queue.empty():
                    n = queue.get_nowait()
                    e = event(args, n)
                    headers, body = to_binary(e) if args.mode == "binary" else to_structured(e)
                    try:
                        response = await client.post(args.url, content=body, headers=headers)
                    except httpx.HTTPError:
                        errors += 1
                        continue
                    code = str(response.status_code)
                    statuses[code] = statuses.get(code, 0) + 1
                    if response.status_code == 202:
                        acked.append(e["id"])
                        if acked_file:
                            acked_file.write(e["id"] + "\n")

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    print(json.dumps({"statuses": statuses, "acked": acked, "errors": errors}))


asyncio.run(main())
