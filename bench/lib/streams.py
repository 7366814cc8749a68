"""A minimal asyncio HTTP/1.1 + SSE client for the benchmark (stdlib only).

Three jobs, each also a subcommand for debugging by hand:

- ``validate``: send one stream and parse it fully (every event JSON, one id,
  content, finish_reason, ``[DONE]`` last, nothing after it).
- ``ttft``: streams at a fixed rate on keep-alive connections; time to the
  first content token and to ``[DONE]`` for each, taken when the bytes are
  read, before any parsing.
- ``hold``: open N slow streams, wait for their first token, keep reading
  them, and sample the resident memory of the processes under test.

Only 127.0.0.1 targets are used by the benchmark; nothing here enforces it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time

HEADERS_END = b"\r\n\r\n"


class HttpError(Exception):
    """A response that is not a 200 or not well formed."""


def request_bytes(host: str, port: int, path: str, body: bytes, key: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"host: {host}:{port}\r\n"
        f"authorization: Bearer {key}\r\n"
        "content-type: application/json\r\n"
        "accept: text/event-stream\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def chat_body(model: str, stream: bool) -> bytes:
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "stream": stream},
        separators=(",", ":"),
    ).encode()


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> "Conn":
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass

    async def head(self) -> tuple[int, dict[str, str]]:
        raw = await self.reader.readuntil(HEADERS_END)
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"bad status line {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def body_pieces(self, headers: dict[str, str]):
        """Yields (bytes, perf_counter at receipt) as the body arrives."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                line = await self.reader.readline()
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while (await self.reader.readline()) not in (b"\r\n", b""):
                        pass
                    return
                # The chunk and its CRLF together, so a consumer may stop
                # after any piece and resume with a new generator.
                data = (await self.reader.readexactly(size + 2))[:-2]
                yield data, time.perf_counter()
        elif "content-length" in headers:
            remaining = int(headers["content-length"])
            while remaining > 0:
                data = await self.reader.read(min(remaining, 65536))
                if not data:
                    raise HttpError("connection closed inside the body")
                remaining -= len(data)
                yield data, time.perf_counter()
        else:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return
                yield data, time.perf_counter()


class SseParser:
    """Splits SSE bytes into events' data strings (comments and blank events skipped)."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[str]:
        self.buffer += data.replace(b"\r\n", b"\n")
        events = []
        while True:
            end = self.buffer.find(b"\n\n")
            if end < 0:
                return events
            block, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            lines = [line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
            if lines:
                events.append(b"\n".join(lines).decode())


def token_of(data: str) -> str:
    """The content (or tool-call arguments) of one chat.completion.chunk, '' if none."""
    if data == "[DONE]":
        return ""
    chunk = json.loads(data)
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            return delta["content"]
        for call in delta.get("tool_calls") or []:
            arguments = (call.get("function") or {}).get("arguments")
            if arguments:
                return arguments
    return ""


async def one_stream(conn: Conn, request: bytes) -> dict:
    """Sends one stream request; returns timings (seconds) and the events."""
    start = time.perf_counter()
    conn.writer.write(request)
    status, headers = await conn.head()
    head_at = time.perf_counter()
    parser = SseParser()
    events: list[str] = []
    first_token_at = None
    done_at = None
    async for data, at in conn.body_pieces(headers):
        for event in parser.feed(data):
            events.append(event)
            if first_token_at is None and status == 200 and token_of(event):
                first_token_at = at
            if event == "[DONE]":
                done_at = at
    if status != 200:
        raise HttpError(f"status {status}: {' '.join(events)[:300]}")
    return {
        "headers_s": head_at - start,
        "ttft_s": None if first_token_at is None else first_token_at - start,
        "done_s": None if done_at is None else done_at - start,
        "events": events,
        "keep_alive": headers.get("connection", "").lower() != "close",
    }


def check_stream(events: list[str]) -> dict:
    """Parses every event of one stream; returns a verdict and what it saw."""
    problems = []
    if not events or events[-1] != "[DONE]":
        problems.append("the last event is not [DONE]")
    if events.count("[DONE]") != 1:
        problems.append(f"[DONE] appears {events.count('[DONE]')} times")
    ids, content, finish = set(), [], None
    for data in events[:-1] if events and events[-1] == "[DONE]" else events:
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError as error:
            problems.append(f"an event is not JSON: {error}: {data[:80]!r}")
            continue
        if chunk.get("object") != "chat.completion.chunk":
            problems.append(f"object is {chunk.get('object')!r}")
        ids.add(chunk.get("id"))
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                content.append(delta["content"])
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    if len(ids) != 1:
        problems.append(f"{len(ids)} distinct ids")
    if finish is None:
        problems.append("no finish_reason")
    return {
        "ok": not problems,
        "problems": problems,
        "events": len(events),
        "content_chunks": len(content),
        "finish_reason": finish,
        "text_start": "".join(content)[:60],
    }


# === validate ===


async def validate(host: str, port: int, model: str, key: str) -> dict:
    conn = await Conn.open(host, port)
    try:
        result = await one_stream(conn, request_bytes(host, port, "/v1/chat/completions", chat_body(model, True), key))
    finally:
        conn.close()
    verdict = check_stream(result["events"])
    verdict["ttft_ms"] = None if result["ttft_s"] is None else result["ttft_s"] * 1e3
    return verdict


# === ttft ===


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


async def ttft(host: str, port: int, model: str, key: str, rate: float, seconds: float, warmup: int) -> dict:
    """Streams at `rate` per second for `seconds` (after `warmup` unmeasured ones)."""
    request = request_bytes(host, port, "/v1/chat/completions", chat_body(model, True), key)
    idle: list[Conn] = []
    samples: list[dict] = []
    errors: list[str] = []
    ok = 0

    async def run_one(record: bool) -> None:
        nonlocal ok
        conn = idle.pop() if idle else await Conn.open(host, port)
        try:
            result = await one_stream(conn, request)
        except Exception as error:  # noqa: BLE001 - counted and reported
            conn.close()
            errors.append(f"{type(error).__name__}: {error}"[:200])
            return
        ok += 1
        if result["keep_alive"]:
            idle.append(conn)
        else:
            conn.close()
        if record and result["ttft_s"] is not None:
            samples.append(result)

    for _ in range(warmup):
        await run_one(False)
    count = int(rate * seconds)
    start = time.perf_counter()
    tasks = []
    for index in range(count):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(run_one(True)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    ttfts = [s["ttft_s"] * 1e3 for s in samples]
    dones = [s["done_s"] * 1e3 for s in samples if s["done_s"] is not None]
    heads = [s["headers_s"] * 1e3 for s in samples]
    return {
        "ok": ok,
        "errors": errors[:5],
        "error_count": len(errors),
        "samples": len(ttfts),
        "ttft_ms": {"p50": percentile(ttfts, 50), "p90": percentile(ttfts, 90), "p99": percentile(ttfts, 99), "max": max(ttfts, default=None)},
        "done_ms": {"p50": percentile(dones, 50), "p99": percentile(dones, 99)},
        "headers_ms": {"p50": percentile(heads, 50), "p99": percentile(heads, 99)},
    }


# === hold ===


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


async def hold(host: str, port: int, model: str, key: str, steps: list[int], pids: list[int], settle: float, ramp: int) -> dict:
    """Opens streams up to each count in `steps`, samples RSS after each step, then closes all."""
    request = request_bytes(host, port, "/v1/chat/completions", chat_body(model, True), key)
    open_streams: list[tuple[Conn, asyncio.Task]] = []
    failures: list[str] = []
    ended_early = 0

    async def drain(conn: Conn, parser_headers: dict[str, str]) -> None:
        nonlocal ended_early
        try:
            async for _ in conn.body_pieces(parser_headers):
                pass
            ended_early += 1
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError, OSError):
            pass

    async def open_one(gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                conn = await Conn.open(host, port)
                conn.writer.write(request)
                status, headers = await asyncio.wait_for(conn.head(), 30)
                if status != 200:
                    raise HttpError(f"status {status}")
                pieces = conn.body_pieces(headers)
                parser = SseParser()
                got_token = False
                while not got_token:
                    data, _ = await asyncio.wait_for(pieces.__anext__(), 30)
                    got_token = any(token_of(event) for event in parser.feed(data))
                await pieces.aclose()
            except Exception as error:  # noqa: BLE001 - counted and reported
                failures.append(f"{type(error).__name__}: {error}"[:200])
                return
            open_streams.append((conn, asyncio.create_task(drain(conn, headers))))

    idle_rss = rss_kib(pids)
    results = {"idle_rss_kib": idle_rss, "steps": [], "failures": failures}
    gate = asyncio.Semaphore(ramp)
    for target in steps:
        started = time.perf_counter()
        missing = target - len(open_streams)
        await asyncio.gather(*(open_one(gate) for _ in range(max(0, missing))))
        ramp_s = time.perf_counter() - started
        await asyncio.sleep(settle)
        alive = sum(1 for _, task in open_streams if not task.done())
        rss = rss_kib(pids)
        results["steps"].append({
            "target": target,
            "open": alive,
            "ramp_s": round(ramp_s, 2),
            "rss_kib": rss,
            "per_stream_kib": round((rss - idle_rss) / alive, 2) if alive else None,
        })
        if len(failures) > 0 and alive < target:
            break
    for conn, task in open_streams:
        task.cancel()
        conn.close()
    await asyncio.sleep(settle)
    results["after_close_rss_kib"] = rss_kib(pids)
    results["ended_early"] = ended_early
    results["failure_count"] = len(failures)
    results["failures"] = failures[:5]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["validate", "ttft", "hold"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default="bench")
    parser.add_argument("--key", default="sk-bench")
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--steps", default="100")
    parser.add_argument("--pids", default="")
    parser.add_argument("--settle", type=float, default=2)
    parser.add_argument("--ramp", type=int, default=256)
    args = parser.parse_args()
    if args.command == "validate":
        result = asyncio.run(validate(args.host, args.port, args.model, args.key))
    elif args.command == "ttft":
        result = asyncio.run(ttft(args.host, args.port, args.model, args.key, args.rate, args.seconds, 10))
    else:
        steps = [int(step) for step in args.steps.split(",")]
        pids = [int(pid) for pid in args.pids.split(",") if pid]
        result = asyncio.run(hold(args.host, args.port, args.model, args.key, steps, pids, args.settle, args.ramp))
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
