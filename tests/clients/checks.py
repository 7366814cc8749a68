"""What the client checks share: each check printed and tallied, and the
mock upstream's request log (what Keel sent upstream)."""

import json
import sys
import urllib.request


class Checks:
    def __init__(self, mock_root):
        self.mock_root = mock_root
        self.failures = []

    def check(self, name, condition, detail=""):
        print(("ok   " if condition else "FAIL ") + name + ("" if condition else f": {detail}"))
        if not condition:
            self.failures.append(name)

    def requests(self):
        """The requests the mock received, oldest first, as it logged them."""
        with urllib.request.urlopen(f"{self.mock_root}/_mock/requests") as response:
            return json.load(response)["requests"]

    def bodies(self):
        """The JSON bodies of those requests."""
        return [json.loads(request["body"]) for request in self.requests()]

    def forget_requests(self):
        request = urllib.request.Request(f"{self.mock_root}/_mock/requests", method="DELETE")
        urllib.request.urlopen(request).close()

    def finish(self):
        """Ends the script: it fails when any check did."""
        print(f"{len(self.failures)} failed")
        sys.exit(1 if self.failures else 0)
