"""Verifies webhooks Keel sent with the reference `standardwebhooks` library.

Reads {"secrets": ["whsec_...", ...], "messages": [{"headers": {...}, "body": "..."}]}
on stdin; every message must verify with every secret (Keel signs with each
secret of a rotation). Prints "N verified with K secrets" or the first
failure and exits non-zero.
"""
import json
import sys

from standardwebhooks import Webhook

payload = json.load(sys.stdin)
for secret in payload["secrets"]:
    webhook = Webhook(secret)
    for index, message in enumerate(payload["messages"]):
        try:
            webhook.verify(message["body"], message["headers"])
        except Exception as error:  # noqa: BLE001 - report any verification failure
            print(f"message {index} rejected with secret {secret[:10]}...: {error!r}")
            sys.exit(1)
    tampered = dict(payload["messages"][0])
    try:
        webhook.verify(tampered["body"] + " ", tampered["headers"])
        print("a tampered body was accepted")
        sys.exit(1)
    except Exception:  # noqa: BLE001 - rejection is the expected outcome
        pass
print(f"{len(payload['messages'])} verified with {len(payload['secrets'])} secrets")
