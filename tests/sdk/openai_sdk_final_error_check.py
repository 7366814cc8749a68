"""The official openai SDK with its default retries (max_retries=2) against a
Keel whose only target always fails: the call must raise Keel's 502 after
one request, since Keel marks its final errors `x-should-retry: false`.

Usage: openai_sdk_final_error_check.py KEEL_BASE_URL KEEL_KEY
Prints the status the SDK raised; exits non-zero when the call succeeded.
"""

import sys

import openai
from openai import OpenAI


def main():
    keel_url, key = sys.argv[1:3]
    client = OpenAI(base_url=keel_url, api_key=key)
    try:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    except openai.APIStatusError as error:
        print(f"raised {error.status_code}")
        return
    sys.exit("the call succeeded, but every target fails")


if __name__ == "__main__":
    main()
