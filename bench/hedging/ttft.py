"""Time to first token of streamed chat completions through Keel.

Sends COUNT streaming requests for MODEL at RATE per second from THREADS
threads (keep-alive connections) and prints one JSON line: the count, the
failures and the time-to-first-content-chunk percentiles in milliseconds,
plus how many answers were marked x-keel-hedged.
"""
import http.client
import json
import sys
import threading
import time

host, port, model, count, rate, threads = (
    sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]))
body = json.dumps({"model": model, "stream": True,
                   "messages": [{"role": "user", "content": "hedging benchmark"}]})
lock = threading.Lock()
samples, failures, hedged = [], [0], [0]
next_index = [0]
start = time.monotonic()


def take():
    with lock:
        index = next_index[0]
        if index >= count:
            return None
        next_index[0] += 1
        return index


def worker():
    connection = http.client.HTTPConnection(host, port, timeout=30)
    while (index := take()) is not None:
        due = start + index / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        sent = time.monotonic()
        try:
            connection.request("POST", "/v1/chat/completions", body,
                               {"authorization": "Bearer sk-bench", "content-type": "application/json"})
            response = connection.getresponse()
            first = None
            while line := response.readline():
                if first is None and line.startswith(b"data: {") and b'"content"' in line:
                    first = time.monotonic() - sent
            ok = response.status == 200 and first is not None
            with lock:
                if ok:
                    samples.append(first * 1000)
                    hedged[0] += response.getheader("x-keel-hedged") == "true"
                else:
                    failures[0] += 1
        except Exception:  # noqa: BLE001 - counted, the run goes on
            with lock:
                failures[0] += 1
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=30)


pool = [threading.Thread(target=worker) for _ in range(threads)]
for thread in pool:
    thread.start()
for thread in pool:
    thread.join()
samples.sort()


def pick(q):
    return round(samples[min(len(samples) - 1, int(q * len(samples)))], 1) if samples else None


print(json.dumps({"ok": len(samples), "failed": failures[0], "hedged": hedged[0],
                  "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": pick(1.0)}))
