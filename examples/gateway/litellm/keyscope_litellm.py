"""LiteLLM proxy hooks that ask `keyscope serve` before every model call and settle after it.

`user_api_key_auth` is a LiteLLM custom auth hook: it takes the caller's bearer (a keyscope key
id, or whatever `key_id_of` maps to one), decides the request and holds its worst-case cost;
a denial is a 403 naming the reasons, so the model is never called. `KeyscopeSettle` is a
LiteLLM callback that commits the actual usage after a successful call and releases the hold
after a failed one. Wire them in the proxy's config.yaml:

    general_settings:
      custom_auth: keyscope_litellm.user_api_key_auth
    litellm_settings:
      callbacks: keyscope_litellm.settle

with KEYSCOPE_URL (default http://127.0.0.1:8181) and, when the service requires one,
KEYSCOPE_TOKEN in the proxy's environment. Anything but an explicit allow is a deny.
"""

import asyncio
import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keyscope_gate import Denied, KeyscopeGate  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402
from litellm.proxy._types import ProxyErrorTypes, ProxyException, UserAPIKeyAuth  # noqa: E402

GATE = KeyscopeGate(
    os.environ.get("KEYSCOPE_URL", "http://127.0.0.1:8181"),
    token=os.environ.get("KEYSCOPE_TOKEN"),
)

# Output tokens held for a request that sets no max_tokens: the hold must cover the worst case.
DEFAULT_MAX_OUTPUT_TOKENS = 4096


def key_id_of(api_key):
    """The keyscope key id a caller's bearer stands for. Here the bearer is the key id; a real
    deployment maps a presented secret to its id (keyscope stores keys by id and fingerprint)."""
    return api_key


def estimate_input_tokens(body):
    """A rough prompt size in tokens (4 characters each): enough to hold a fair worst case."""
    text = "".join(str(m.get("content", "")) for m in body.get("messages", []) or [])
    return max(1, len(text) // 4)


async def user_api_key_auth(request, api_key):
    """LiteLLM custom auth: an allow with a hold, or an exception LiteLLM answers with 401."""
    body = await request.json() if request.method == "POST" else {}
    model = body.get("model")
    if not model:
        raise refusal("keyscope: the request names no model", 400)
    request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
    max_output = body.get("max_tokens") or body.get("max_completion_tokens")
    source_ip = request.client.host if request.client else None
    try:
        hold = await asyncio.to_thread(
            GATE.reserve, key_id_of(api_key), model, request_id,
            input_tokens=estimate_input_tokens(body),
            max_output_tokens=max_output or DEFAULT_MAX_OUTPUT_TOKENS,
            source_ip=source_ip,
        )
    except Denied as denied:
        raise refusal("keyscope denied: " + ", ".join(denied.reasons), 403) from denied
    return UserAPIKeyAuth(api_key=api_key, metadata={"keyscope_hold": hold})


def refusal(message, code):
    """The error LiteLLM answers a refused request with (a ProxyException, which it passes on as
    it is: any other exception in a custom auth hook becomes a 401 or, in some LiteLLM versions
    without the prisma package, a 500)."""
    return ProxyException(message=message, type=ProxyErrorTypes.auth_error, param="None",
                          code=code)


def hold_of(kwargs):
    """The hold `user_api_key_auth` took for the call LiteLLM reports on."""
    metadata = (kwargs.get("litellm_params") or {}).get("metadata") or {}
    key_metadata = metadata.get("user_api_key_metadata") or {}
    return key_metadata.get("keyscope_hold")


class KeyscopeSettle(CustomLogger):
    """Commits a successful call's usage, releases a failed call's hold."""

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        hold = hold_of(kwargs)
        if hold is None:
            return
        usage = getattr(response_obj, "usage", None)
        prompt = getattr(usage, "prompt_tokens", 0) or 0
        completion = getattr(usage, "completion_tokens", 0) or 0
        await asyncio.to_thread(GATE.commit, hold, input_tokens=prompt, output_tokens=completion)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        hold = hold_of(kwargs)
        if hold is not None:
            await asyncio.to_thread(GATE.release, hold)


settle = KeyscopeSettle()
