"""The official openai SDK's embeddings call, as an application makes it,
against Keel and directly against the keel mock upstream: the vectors and
usage must be identical, as floats and as base64 (which the SDK asks for by
default and decodes itself).

Usage: embeddings_check.py KEEL_BASE_URL KEEL_KEY MOCK_BASE_URL PUBLIC_MODEL UPSTREAM_MODEL
Exits non-zero with a message naming the first difference.
"""

import sys

from openai import OpenAI

INPUTS = ["The quick brown fox", "Zürich ✓"]


def vectors(client, model, **extra):
    answer = client.embeddings.create(model=model, input=INPUTS, **extra)
    return [item.embedding for item in answer.data], answer.usage.prompt_tokens


def main():
    keel_url, key, mock_url, public, upstream = sys.argv[1:6]
    keel = OpenAI(base_url=keel_url, api_key=key, max_retries=0)
    mock = OpenAI(base_url=mock_url, api_key="unused", max_retries=0)
    for label, extra in [("default (base64)", {}), ("float", {"encoding_format": "float"}),
                         ("dimensions", {"dimensions": 8, "encoding_format": "float"})]:
        through_keel = vectors(keel, public, **extra)
        direct = vectors(mock, upstream, **extra)
        if through_keel != direct:
            sys.exit(f"{label}: Keel's answer differs from the upstream's")
        if len(through_keel[0]) != len(INPUTS) or through_keel[1] <= 0:
            sys.exit(f"{label}: unexpected answer {through_keel}")
    print("ok", len(through_keel[0][0]))


main()
