"""Checks that the official Python SDKs work against the harness's mock LLM.

Usage: sdk_mock_llm.py BASE_URL KEY

BASE_URL is the mock's root (``http://127.0.0.1:PORT``) and KEY a key the
mock accepts. With ``openai``, ``anthropic`` and ``google-genai`` (installed
by ``make venv``), it makes a non-streaming and a streaming call per
provider (plus Azure OpenAI, the OpenAI Responses API, embeddings, token
counting and model lists), asserts that text and usage come through as the
mock's deterministic model defines them, and that a wrong key raises each
SDK's authentication error. Driven by ``harness/tests/mock_llm.rs``; exits
non-zero with a message on the first failure.

The mock's model: one token per whitespace-separated word; the reply is
"Hello from the mock. You said: " and the first six words of the last user
text.
"""

import os
import sys

# The mock is on loopback: never route it through a proxy from the env.
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_var, None)

import anthropic  # noqa: E402
import openai  # noqa: E402
from google import genai  # noqa: E402
from google.genai import errors as genai_errors  # noqa: E402
from google.genai import types  # noqa: E402

PROMPT = "say hello to the mock"
PROMPT_TOKENS = 5
REPLY = "Hello from the mock. You said: say hello to the mock"
REPLY_TOKENS = 11
WRONG_KEY = "sk-wrong-key-for-the-mock"

CHECKS = []


def check(name):
    def register(fn):
        CHECKS.append((name, fn))
        return fn

    return register


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


# ---------------------------------------------------------------------- OpenAI


def openai_client(base, key):
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=20)


@check("openai chat")
def openai_chat(base, key):
    r = openai_client(base, key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )
    eq(r.choices[0].message.content, REPLY, "text")
    eq(r.choices[0].finish_reason, "stop", "finish_reason")
    eq(r.usage.prompt_tokens, PROMPT_TOKENS, "prompt_tokens")
    eq(r.usage.completion_tokens, REPLY_TOKENS, "completion_tokens")
    eq(r.usage.total_tokens, PROMPT_TOKENS + REPLY_TOKENS, "total_tokens")
    eq(r.model, "gpt-4o-mini", "model")


@check("openai chat stream")
def openai_chat_stream(base, key):
    stream = openai_client(base, key).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    eq(text, REPLY, "streamed text")
    deltas = [c for c in chunks if c.choices and c.choices[0].delta.content]
    eq(len(deltas), REPLY_TOKENS, "content chunks")
    last = chunks[-1]
    eq(last.choices, [], "last chunk's choices")
    eq(last.usage.prompt_tokens, PROMPT_TOKENS + 2, "prompt_tokens")
    eq(last.usage.completion_tokens, REPLY_TOKENS, "completion_tokens")
    if any(c.usage is not None for c in chunks[:-1]):
        raise AssertionError("usage before the last chunk")


@check("openai chat stream without include_usage")
def openai_chat_stream_no_usage(base, key):
    chunks = list(
        openai_client(base, key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    eq(chunks[-1].choices[0].finish_reason, "stop", "finish_reason")
    if any(getattr(c, "usage", None) is not None for c in chunks):
        raise AssertionError("usage sent without stream_options.include_usage")


@check("openai responses")
def openai_responses(base, key):
    r = openai_client(base, key).responses.create(model="gpt-4.1", input=PROMPT, instructions="be brief")
    eq(r.output_text, REPLY, "output_text")
    eq(r.status, "completed", "status")
    eq(r.usage.input_tokens, PROMPT_TOKENS + 2, "input_tokens")
    eq(r.usage.output_tokens, REPLY_TOKENS, "output_tokens")
    eq(r.usage.total_tokens, PROMPT_TOKENS + 2 + REPLY_TOKENS, "total_tokens")


@check("openai responses stream")
def openai_responses_stream(base, key):
    client = openai_client(base, key)
    events = list(
        client.responses.create(
            model="gpt-4.1", input=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    eq(events[0].type, "response.created", "first event")
    eq(events[-1].type, "response.completed", "last event")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    eq(text, REPLY, "streamed text")
    eq(events[-1].response.usage.input_tokens, PROMPT_TOKENS, "input_tokens")
    eq(events[-1].response.usage.output_tokens, REPLY_TOKENS, "output_tokens")
    eq([e.sequence_number for e in events], list(range(len(events))), "sequence numbers")
    # The SDK's accumulating helper too.
    with client.responses.stream(model="gpt-4.1", input=PROMPT) as s:
        final = s.get_final_response()
    eq(final.output_text, REPLY, "helper's output_text")
    eq(final.usage.output_tokens, REPLY_TOKENS, "helper's output_tokens")


@check("openai embeddings")
def openai_embeddings(base, key):
    client = openai_client(base, key)
    # The SDK asks for base64 by default and decodes it.
    r = client.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    eq(len(r.data), 2, "embeddings")
    eq(len(r.data[0].embedding), 16, "dimensions")
    if not all(-1.0 <= x <= 1.0 for x in r.data[0].embedding):
        raise AssertionError("components out of [-1, 1]")
    eq(r.usage.prompt_tokens, 3, "prompt_tokens")
    f = client.embeddings.create(
        model="text-embedding-3-small", input="one two", encoding_format="float", dimensions=8
    )
    eq(len(f.data[0].embedding), 8, "float dimensions")
    b = client.embeddings.create(model="text-embedding-3-small", input="one two", dimensions=8)
    eq(b.data[0].embedding, f.data[0].embedding, "base64 and float forms")


@check("openai models")
def openai_models(base, key):
    ids = [m.id for m in openai_client(base, key).models.list()]
    if "gpt-4o-mini" not in ids:
        raise AssertionError(f"models: {ids}")


@check("openai wrong key")
def openai_wrong_key(base, _key):
    try:
        openai_client(base, WRONG_KEY).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
        )
    except openai.AuthenticationError as e:
        eq(e.status_code, 401, "status")
        eq(e.code, "invalid_api_key", "error code")
        if WRONG_KEY in str(e.body):
            raise AssertionError("the error echoes the key")
        return
    raise AssertionError("no AuthenticationError")


@check("azure openai chat")
def azure_chat(base, key):
    client = openai.AzureOpenAI(
        azure_endpoint=base, api_key=key, api_version="2024-10-21", max_retries=0, timeout=20
    )
    r = client.chat.completions.create(model="my-gpt4o", messages=[{"role": "user", "content": PROMPT}])
    eq(r.choices[0].message.content, REPLY, "text")
    eq(r.usage.total_tokens, PROMPT_TOKENS + REPLY_TOKENS, "total_tokens")
    chunks = list(
        client.chat.completions.create(
            model="my-gpt4o",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    eq("".join(c.choices[0].delta.content or "" for c in chunks if c.choices), REPLY, "streamed text")
    eq(chunks[-1].usage.completion_tokens, REPLY_TOKENS, "completion_tokens")
    e = client.embeddings.create(model="my-embedder", input="x")
    eq(len(e.data), 1, "embeddings")
    try:
        openai.AzureOpenAI(
            azure_endpoint=base, api_key=WRONG_KEY, api_version="2024-10-21", max_retries=0
        ).chat.completions.create(model="my-gpt4o", messages=[{"role": "user", "content": PROMPT}])
    except openai.AuthenticationError:
        return
    raise AssertionError("no AuthenticationError")


# ------------------------------------------------------------------- Anthropic


def anthropic_client(base, key):
    return anthropic.Anthropic(base_url=base, api_key=key, max_retries=0, timeout=20)


@check("anthropic messages")
def anthropic_messages(base, key):
    m = anthropic_client(base, key).messages.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": PROMPT}]
    )
    eq(m.content[0].type, "text", "block type")
    eq(m.content[0].text, REPLY, "text")
    eq(m.stop_reason, "end_turn", "stop_reason")
    eq(m.usage.input_tokens, PROMPT_TOKENS, "input_tokens")
    eq(m.usage.output_tokens, REPLY_TOKENS, "output_tokens")
    eq(m.usage.cache_read_input_tokens, 0, "cache_read_input_tokens")
    capped = anthropic_client(base, key).messages.create(
        model="claude-sonnet-4-6", max_tokens=3, messages=[{"role": "user", "content": PROMPT}]
    )
    eq(capped.stop_reason, "max_tokens", "capped stop_reason")
    eq(capped.usage.output_tokens, 3, "capped output_tokens")


@check("anthropic messages stream")
def anthropic_messages_stream(base, key):
    with anthropic_client(base, key).messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=64,
        system="be brief",
        messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
    ) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    eq("".join(pieces), REPLY, "streamed text")
    eq(len(pieces), REPLY_TOKENS, "text deltas")
    eq(final.content[0].text, REPLY, "final text")
    eq(final.usage.input_tokens, PROMPT_TOKENS + 2, "input_tokens")
    eq(final.usage.output_tokens, REPLY_TOKENS, "output_tokens")
    eq(final.stop_reason, "end_turn", "stop_reason")
    # The raw event stream, in the documented order.
    raw = anthropic_client(base, key).messages.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    kinds = [e.type for e in raw]
    eq(kinds[:3], ["message_start", "content_block_start", "content_block_delta"], "first events")
    eq(kinds[-3:], ["content_block_stop", "message_delta", "message_stop"], "last events")


@check("anthropic count_tokens and models")
def anthropic_count_and_models(base, key):
    client = anthropic_client(base, key)
    n = client.messages.count_tokens(model="claude-sonnet-4-6", messages=[{"role": "user", "content": PROMPT}])
    eq(n.input_tokens, PROMPT_TOKENS, "input_tokens")
    ids = [m.id for m in client.models.list()]
    if "claude-sonnet-4-6" not in ids:
        raise AssertionError(f"models: {ids}")


@check("anthropic wrong key")
def anthropic_wrong_key(base, _key):
    try:
        anthropic_client(base, WRONG_KEY).messages.create(
            model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": PROMPT}]
        )
    except anthropic.AuthenticationError as e:
        eq(e.status_code, 401, "status")
        eq(e.body["error"]["type"], "authentication_error", "error type")
        return
    raise AssertionError("no AuthenticationError")


# ---------------------------------------------------------------------- Gemini


def gemini_client(base, key, api_version=None):
    # Keep the returned client referenced while using it: google-genai closes
    # its HTTP client when the Client object is collected. google-genai 3.x
    # uses API version v1 unless told otherwise.
    return genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=base, timeout=20_000, api_version=api_version)
    )


@check("gemini generate_content")
def gemini_generate(base, key):
    client = gemini_client(base, key)
    r = client.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    eq(r.text, REPLY, "text")
    eq(r.usage_metadata.prompt_token_count, PROMPT_TOKENS, "prompt_token_count")
    eq(r.usage_metadata.candidates_token_count, REPLY_TOKENS, "candidates_token_count")
    eq(r.usage_metadata.total_token_count, PROMPT_TOKENS + REPLY_TOKENS, "total_token_count")
    eq(r.candidates[0].finish_reason, types.FinishReason.STOP, "finish_reason")
    capped = client.models.generate_content(
        model="gemini-2.5-flash", contents=PROMPT, config=types.GenerateContentConfig(max_output_tokens=2)
    )
    eq(capped.text, "Hello from", "capped text")
    eq(capped.candidates[0].finish_reason, types.FinishReason.MAX_TOKENS, "capped finish_reason")


@check("gemini generate_content_stream")
def gemini_stream(base, key):
    client = gemini_client(base, key)
    chunks = list(
        client.models.generate_content_stream(
            model="gemini-2.5-flash",
            contents=PROMPT,
            config=types.GenerateContentConfig(system_instruction="be brief"),
        )
    )
    eq("".join(c.text or "" for c in chunks), REPLY, "streamed text")
    eq(len(chunks), REPLY_TOKENS, "chunks")
    last = chunks[-1].usage_metadata
    eq(last.prompt_token_count, PROMPT_TOKENS + 2, "prompt_token_count")
    eq(last.candidates_token_count, REPLY_TOKENS, "candidates_token_count")
    eq(last.total_token_count, PROMPT_TOKENS + 2 + REPLY_TOKENS, "total_token_count")
    counts = [c.usage_metadata.candidates_token_count for c in chunks]
    eq(counts, list(range(1, REPLY_TOKENS + 1)), "cumulative candidates_token_count")


@check("gemini v1beta")
def gemini_v1beta(base, key):
    client = gemini_client(base, key, api_version="v1beta")
    r = client.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    eq(r.text, REPLY, "text")
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT))
    eq(chunks[-1].usage_metadata.total_token_count, PROMPT_TOKENS + REPLY_TOKENS, "total_token_count")


@check("gemini count_tokens and embed_content")
def gemini_count_and_embed(base, key):
    client = gemini_client(base, key)
    eq(client.models.count_tokens(model="gemini-2.5-flash", contents=PROMPT).total_tokens, PROMPT_TOKENS, "total_tokens")
    e = client.models.embed_content(model="gemini-embedding-001", contents=["one two", "three"])
    eq(len(e.embeddings), 2, "embeddings")
    eq(len(e.embeddings[0].values), 16, "dimensions")


@check("gemini wrong key")
def gemini_wrong_key(base, _key):
    client = gemini_client(base, WRONG_KEY)
    try:
        client.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    except genai_errors.ClientError as e:
        eq(e.code, 401, "code")
        eq(e.status, "UNAUTHENTICATED", "status")
        if WRONG_KEY in str(e):
            raise AssertionError("the error echoes the key")
        return
    raise AssertionError("no ClientError")


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    base, key = argv[1].rstrip("/"), argv[2]
    for name, fn in CHECKS:
        try:
            fn(base, key)
        except Exception as e:  # report which check failed, then stop
            print(f"FAIL {name}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print(f"ok   {name}")
    print(f"all {len(CHECKS)} SDK checks passed "
          f"(openai {openai.__version__}, anthropic {anthropic.__version__}, google-genai {genai.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
