//! The body path's native comparison (`--body-path`): Tollgate's body rule
//! done with Envoy's own filters, as an operator without Tollgate would.
//! `envoy.filters.http.rbac` (the same policy as the native gateway of the
//! default mode: workload prefix, host, `POST /v1/chat/completions`), then
//! `envoy.filters.http.lua` with the script below. The script uses only
//! the stream-handle API of Envoy 1.40's Lua filter (`headers()`, `body()`,
//! `bodyChunks()`, `respond()`, `streamInfo()` with
//! `downstreamSslConnection()` and `dynamicMetadata()`; buffer `length()`,
//! `getBytes()`, `setBytes()`, which also sets `content-length`).
//!
//! What the script does, per request, in the order Tollgate does it:
//! 1. Reads the caller's URI SAN for its record (rbac has already checked
//!    it).
//! 2. Requires `content-type: application/json` (parameters allowed) and no
//!    `content-encoding` but `identity`, else 415 `body_unsupported`.
//! 3. Buffers the whole body (`body()`), 413 `body_too_large` past 512 KiB
//!    (Tollgate's default `max_body_bytes`).
//! 4. Finds the model with a Lua pattern, `"model"%s*:%s*"([^"\\]*)"`: the
//!    first `"model":"…"` pair anywhere in the text, escapes not decoded.
//!    No model: 403 `model_missing`; not on the list: 403
//!    `model_not_permitted`.
//! 5. Finds `max_tokens` and `max_completion_tokens` the same way (first
//!    occurrence, digits only) and splices the cap over any value above it;
//!    with neither, writes `"max_completion_tokens":2000` first in the
//!    object. A change goes back with `setBytes`.
//! 6. Removes `x-api-key`, `api-key` and `x-goog-api-key`, replaces
//!    `authorization` with `Bearer <key>` (a static key in the script), and
//!    asks for `accept-encoding: identity`.
//! 7. Stores its record (workload, model, caps, clamped, stream, decision)
//!    in dynamic metadata, which the gateway's access log writes where
//!    Tollgate's audit record goes.
//!
//! And per response: every chunk as it passes (`bodyChunks()`, nothing
//! held) is searched for the key (an echo is replaced by `*`s, within the
//! chunk); an SSE stream is searched chunk by chunk, with the previous
//! 1 KiB carried over, for a `"usage":{…}` object; a JSON body is copied
//! (up to 4 MiB) and searched at its end. Usage (input, output, cached
//! input, reasoning, total) goes into dynamic metadata.
//!
//! Where the script does less than Tollgate (so the comparison favours it):
//! the body is not validated as JSON (no check for duplicate keys, escapes,
//! trailing data, nesting, or a cap that is not a plain integer: `5000.0`
//! passes as `5000`), the `"model"` found may be any `"model"` key at any
//! depth, usage is found only in OpenAI's key order (`prompt_tokens`,
//! `completion_tokens`, `total_tokens`), a key echo split across two chunks
//! is missed, `?key=` is not stripped from the query, the key is static (no
//! credential service, cache or refresh), and `stream_options.include_usage`
//! is never written in (the benchmark's streamed request asks for usage
//! itself, so Tollgate writes nothing either).

use serde_json::{json, Value};

use super::traffic::{MAX_OUTPUT_TOKENS, MODEL};
use super::REAL_KEY;

/// Dynamic metadata namespace the script writes (the filter's name).
pub(crate) const LUA_NAMESPACE: &str = "envoy.filters.http.lua";

/// The Lua filter with the body rule's script.
pub(crate) fn lua_filter() -> Value {
    json!({
        "name": LUA_NAMESPACE,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": script()},
        },
    })
}

/// The script, with the key, the allowed model and the cap filled in.
pub(crate) fn script() -> String {
    SCRIPT
        .replace("@KEY@", REAL_KEY)
        .replace("@MODEL@", MODEL)
        .replace("@CAP@", &MAX_OUTPUT_TOKENS.to_string())
        .replace("@NS@", LUA_NAMESPACE)
}

const SCRIPT: &str = r#"
local KEY = "@KEY@"
local BEARER = "Bearer " .. KEY
local STARS = string.rep("*", #KEY)
local MODELS = { ["@MODEL@"] = true }
local CAP = @CAP@
local MAX_BODY = 524288
local MAX_JSON_COPY = 4194304
local TAIL = 1024
local NS = "@NS@"
local CAP_PATTERNS = {
  '"max_tokens"%s*:%s*()(%d+)()',
  '"max_completion_tokens"%s*:%s*()(%d+)()',
}
local USAGE = '"usage"%s*:%s*{%s*"prompt_tokens"%s*:%s*(%d+)%s*,%s*"completion_tokens"%s*:%s*(%d+)%s*,%s*"total_tokens"%s*:%s*(%d+)()'

local function refuse(handle, status, reason, record)
  record.decision = "deny"
  record.reason = reason
  handle:streamInfo():dynamicMetadata():set(NS, "request", record)
  handle:respond(
    { [":status"] = status, ["content-type"] = "application/json", ["x-tollgate-reason"] = reason },
    '{"error":{"type":"policy","code":"' .. reason .. '"}}')
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local record = {}
  local ssl = handle:streamInfo():downstreamSslConnection()
  if ssl ~= nil then
    record.workload = ssl:uriSanPeerCertificate()[1]
  end
  local ct = headers:get("content-type")
  if ct == nil or string.match(string.lower(ct), "^%s*([^;%s]+)") ~= "application/json" then
    return refuse(handle, "415", "body_unsupported", record)
  end
  local ce = headers:get("content-encoding")
  if ce ~= nil and string.lower(ce) ~= "identity" then
    return refuse(handle, "415", "body_unsupported", record)
  end
  local body = handle:body()
  if body == nil then
    return refuse(handle, "403", "model_missing", record)
  end
  local size = body:length()
  if size > MAX_BODY then
    return refuse(handle, "413", "body_too_large", record)
  end
  local text = body:getBytes(0, size)
  local model = string.match(text, '"model"%s*:%s*"([^"\\]*)"')
  if model == nil then
    return refuse(handle, "403", "model_missing", record)
  end
  record.model = model
  if not MODELS[model] then
    return refuse(handle, "403", "model_not_permitted", record)
  end
  record.stream = string.find(text, '"stream"%s*:%s*true') ~= nil
  local requested = nil
  local changed = false
  for _, pattern in ipairs(CAP_PATTERNS) do
    local _, _, from, digits, to = string.find(text, pattern)
    if digits ~= nil then
      local n = tonumber(digits)
      if requested == nil or n > requested then
        requested = n
      end
      if n > CAP then
        text = string.sub(text, 1, from - 1) .. CAP .. string.sub(text, to)
        changed = true
        record.clamped = true
      end
    end
  end
  if requested == nil then
    text = string.gsub(text, "^(%s*{)", '%1"max_completion_tokens":' .. CAP .. ",", 1)
    changed = true
  end
  if changed then
    body:setBytes(text)
  end
  record.max_tokens_requested = requested
  record.max_tokens_effective = math.min(requested or CAP, CAP)
  -- The header object taken before body() is dead once the script has
  -- waited for the body; take it again.
  headers = handle:headers()
  headers:remove("x-api-key")
  headers:remove("api-key")
  headers:remove("x-goog-api-key")
  headers:replace("authorization", BEARER)
  headers:replace("accept-encoding", "identity")
  record.decision = "allow"
  handle:streamInfo():dynamicMetadata():set(NS, "request", record)
end

local function read_usage(text, usage)
  local s, _, input, output, total, after = string.find(text, USAGE)
  if s == nil then
    return false
  end
  usage.input = tonumber(input)
  usage.output = tonumber(output)
  usage.total = tonumber(total)
  usage.cached_input = tonumber(string.match(text, '"cached_tokens"%s*:%s*(%d+)', after))
  usage.reasoning = tonumber(string.match(text, '"reasoning_tokens"%s*:%s*(%d+)', after))
  return true
end

local function redact(chunk, s)
  local i = string.find(s, KEY, 1, true)
  if i == nil then
    return 0
  end
  local out, from, n = {}, 1, 0
  while i ~= nil do
    out[#out + 1] = string.sub(s, from, i - 1)
    out[#out + 1] = STARS
    from = i + #KEY
    n = n + 1
    i = string.find(s, KEY, from, true)
  end
  out[#out + 1] = string.sub(s, from)
  chunk:setBytes(table.concat(out))
  return n
end

function envoy_on_response(handle)
  local headers = handle:headers()
  local status = headers:get(":status")
  local sse = string.find(headers:get("content-type") or "", "text/event-stream", 1, true) ~= nil
  local usage = {}
  local found = false
  local tail = ""
  local parts, copied = {}, 0
  local redacted = 0
  for chunk in handle:bodyChunks() do
    local n = chunk:length()
    if n > 0 then
      local s = chunk:getBytes(0, n)
      redacted = redacted + redact(chunk, s)
      if sse then
        local window = tail .. s
        if read_usage(window, usage) then
          found = true
        end
        tail = string.sub(window, -TAIL)
      elseif copied + n <= MAX_JSON_COPY then
        parts[#parts + 1] = s
        copied = copied + n
      end
    end
  end
  if not sse and read_usage(table.concat(parts), usage) then
    found = true
  end
  local response = { upstream_status = tonumber(status), stream = sse, key_echo_redacted = redacted }
  if found then
    response.usage = usage
  end
  handle:streamInfo():dynamicMetadata():set(NS, "response", response)
end
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_has_every_placeholder_filled() {
        let s = script();
        assert!(!s.contains('@'), "{s}");
        assert!(s.contains(REAL_KEY) && s.contains(MODEL));
    }
}
