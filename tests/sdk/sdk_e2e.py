"""The official SDKs through a Tollgate gateway (driven by tests/tests/envoy_sdks.rs).

Each SDK makes a non-streaming and a streaming call as an allowed workload,
and one call as a denied workload; the OpenAI SDK also streams once without
asking for usage. Every client sends only a placeholder key and presents
its workload certificate through an ssl.SSLContext. Each allowed call
carries `x-e2e-call: <sdk>-<call>`, so the test can find it upstream (and
from there its audit record). Prints one JSON object per call on stdout;
exits non-zero on any surprise.

`dlp` (run only when named, against a rule with a DLP policy): the OpenAI
and Anthropic SDKs send a prompt holding a key (TOLLGATE_DLP_KEY, made up
by the test at run time) and must fail with 403 and our reason code; the
OpenAI SDK then sends a card number and the operator's literal, created
and streamed, and must get its answer (the test checks what went upstream).
The key is never printed.

Environment: TOLLGATE_GW (https://localhost:PORT), TOLLGATE_CA,
TOLLGATE_ALLOWED_CERT/KEY, TOLLGATE_DENIED_CERT/KEY, TOLLGATE_PLACEHOLDER;
TOLLGATE_DLP_KEY for `dlp`.
"""
import json
import os
import ssl
import sys

import anthropic
import httpx
import httpx2
import openai
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

GW = os.environ["TOLLGATE_GW"]
PLACEHOLDER = os.environ["TOLLGATE_PLACEHOLDER"]


def ctx(who):
    c = ssl.create_default_context(cafile=os.environ["TOLLGATE_CA"])
    c.load_cert_chain(os.environ[f"TOLLGATE_{who}_CERT"], os.environ[f"TOLLGATE_{who}_KEY"])
    return c


def emit(**kw):
    print(json.dumps(kw), flush=True)


def tag(sdk, call):
    return {"x-e2e-call": f"{sdk}-{call}"}


def openai_client(who):
    return openai.OpenAI(base_url=GW + "/v1", api_key=PLACEHOLDER, max_retries=0,
                         http_client=httpx.Client(verify=ctx(who), headers={"Host": "api.openai.com"}))


def anthropic_client(who):
    return anthropic.Anthropic(base_url=GW, api_key=PLACEHOLDER, max_retries=0,
                               http_client=httpx2.Client(verify=ctx(who), headers={"Host": "api.anthropic.com"}))


def gemini_client(who):
    return genai.Client(api_key=PLACEHOLDER, http_options=types.HttpOptions(
        base_url=GW, api_version="v1beta",
        retry_options=types.HttpRetryOptions(attempts=1),
        httpx_client=httpx.Client(verify=ctx(who), headers={"Host": "generativelanguage.googleapis.com"})))


def run_openai():
    c = openai_client("ALLOWED")
    msgs = [{"role": "user", "content": "hello from openai"}]
    r = c.chat.completions.create(model="gpt-4o-mini", messages=msgs,
                                  extra_headers=tag("openai", "create"))
    emit(sdk="openai", call="create", model="gpt-4o-mini", text=r.choices[0].message.content,
         input_tokens=r.usage.prompt_tokens, output_tokens=r.usage.completion_tokens)
    text, usage = "", None
    for chunk in c.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                           stream_options={"include_usage": True},
                                           extra_headers=tag("openai", "stream")):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    emit(sdk="openai", call="stream", model="gpt-4o-mini", text=text,
         input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens)
    # Without include_usage: the gateway asks for usage upstream; the SDK
    # must see the stream it asked for (no usage chunk).
    text, chunks, usage_chunks = "", 0, 0
    for chunk in c.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                           extra_headers=tag("openai", "stream_plain")):
        chunks += 1
        if not chunk.choices or chunk.usage is not None:
            usage_chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    emit(sdk="openai", call="stream_plain", model="gpt-4o-mini", text=text, chunks=chunks,
         usage_chunks=usage_chunks)
    try:
        openai_client("DENIED").chat.completions.create(model="gpt-4o-mini", messages=msgs)
        emit(sdk="openai", call="denied", error=None)
    except openai.APIStatusError as e:
        emit(sdk="openai", call="denied", error=type(e).__name__, status=e.status_code,
             reason_header=e.response.headers.get("x-tollgate-reason"), message=str(e))


def run_anthropic():
    c = anthropic_client("ALLOWED")
    msgs = [{"role": "user", "content": "hello from anthropic"}]
    r = c.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=msgs,
                          extra_headers=tag("anthropic", "create"))
    emit(sdk="anthropic", call="create", model="claude-sonnet-4-5", text=r.content[0].text,
         input_tokens=r.usage.input_tokens, output_tokens=r.usage.output_tokens)
    with c.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=msgs,
                           extra_headers=tag("anthropic", "stream")) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    emit(sdk="anthropic", call="stream", model="claude-sonnet-4-5", text=text,
         input_tokens=final.usage.input_tokens, output_tokens=final.usage.output_tokens)
    try:
        anthropic_client("DENIED").messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=msgs)
        emit(sdk="anthropic", call="denied", error=None)
    except anthropic.APIStatusError as e:
        emit(sdk="anthropic", call="denied", error=type(e).__name__, status=e.status_code,
             reason_header=e.response.headers.get("x-tollgate-reason"), message=str(e))


def run_gemini():
    c = gemini_client("ALLOWED")

    def tagged(call):
        return types.GenerateContentConfig(http_options=types.HttpOptions(headers=tag("gemini", call)))

    r = c.models.generate_content(model="gemini-2.0-flash", contents="hello from gemini",
                                  config=tagged("create"))
    emit(sdk="gemini", call="create", model="gemini-2.0-flash", text=r.text,
         input_tokens=r.usage_metadata.prompt_token_count,
         output_tokens=r.usage_metadata.candidates_token_count)
    text, usage = "", None
    for chunk in c.models.generate_content_stream(model="gemini-2.0-flash", contents="hello from gemini",
                                                  config=tagged("stream")):
        text += chunk.text or ""
        usage = chunk.usage_metadata or usage
    emit(sdk="gemini", call="stream", model="gemini-2.0-flash", text=text,
         input_tokens=usage.prompt_token_count, output_tokens=usage.candidates_token_count)
    try:
        gemini_client("DENIED").models.generate_content(model="gemini-2.0-flash", contents="hi")
        emit(sdk="gemini", call="denied", error=None)
    except genai_errors.APIError as e:
        emit(sdk="gemini", call="denied", error=type(e).__name__, status=e.code,
             reason_header=e.response.headers.get("x-tollgate-reason") if e.response is not None else None,
             message=str(e))


def denied(sdk, call, e, status):
    """An SDK error as the test reads it: status, reason header, message."""
    emit(sdk=sdk, call=call, error=type(e).__name__, status=status,
         reason_header=e.response.headers.get("x-tollgate-reason") if e.response is not None else None,
         message=str(e))


# A Luhn-valid test card number, and the operator's literal of the test's policy.
CARD = "4111 1111 1111 1111"
REDACTED_PROMPT = f"Project Falcon: pay with {CARD} now, then confirm the invoice."


def run_dlp():
    key = os.environ["TOLLGATE_DLP_KEY"]
    leaked = f"Our deploy fails with 401. The key in the config is {key}, is it expired?"
    try:
        openai_client("ALLOWED").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": leaked}],
            extra_headers=tag("openai", "dlp_blocked"))
        emit(sdk="openai", call="dlp_blocked", error=None)
    except openai.APIStatusError as e:
        denied("openai", "dlp_blocked", e, e.status_code)
    try:
        anthropic_client("ALLOWED").messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": leaked}],
            extra_headers=tag("anthropic", "dlp_blocked"))
        emit(sdk="anthropic", call="dlp_blocked", error=None)
    except anthropic.APIStatusError as e:
        denied("anthropic", "dlp_blocked", e, e.status_code)

    c = openai_client("ALLOWED")
    msgs = [{"role": "user", "content": REDACTED_PROMPT}]
    r = c.chat.completions.create(model="gpt-4o-mini", messages=msgs,
                                  extra_headers=tag("openai", "dlp_redacted"))
    emit(sdk="openai", call="dlp_redacted", model="gpt-4o-mini", text=r.choices[0].message.content,
         sent=REDACTED_PROMPT)
    text = ""
    for chunk in c.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                           stream_options={"include_usage": True},
                                           extra_headers=tag("openai", "dlp_redacted_stream")):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    emit(sdk="openai", call="dlp_redacted_stream", model="gpt-4o-mini", text=text, sent=REDACTED_PROMPT)


if __name__ == "__main__":
    which = sys.argv[1:] or ["openai", "anthropic", "gemini"]
    for name in which:
        {"openai": run_openai, "anthropic": run_anthropic, "gemini": run_gemini, "dlp": run_dlp}[name]()
