"""Ask `keyscope serve` before a model call, and settle the hold after it: the standard library
only, so it drops into any Python gateway (a LiteLLM custom auth hook, a Flask proxy, a script).

    gate = KeyscopeGate("http://127.0.0.1:8181")
    hold = gate.reserve(key_id, model, request_id, input_tokens=1200, max_output_tokens=800,
                        source_ip=client_ip)       # raises Denied with the reasons
    ... call the model with the provider key the gateway holds ...
    gate.commit(hold, input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens)

A gateway must treat anything but an explicit allow as a deny: an unreachable service, a 4xx or
5xx, a missing obligation it cannot honour.
"""

import json
import sys
import urllib.error
import urllib.request


class Denied(Exception):
    """The decision was not an allow; `reasons` says why (policy ids or keyscope rules)."""

    def __init__(self, reasons, errors=()):
        super().__init__(", ".join(reasons) or "denied")
        self.reasons = list(reasons)
        self.errors = list(errors)


class KeyscopeGate:
    """A client of one `keyscope serve`."""

    def __init__(self, base_url, timeout=2.0, token=None):
        """`token`: the bearer token, when the service was started with `--tokens`."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = "Bearer " + token

    def _post(self, path, body):
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers=self.headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            raise Denied(["http-%d" % e.code], [e.read().decode(errors="replace")]) from e
        except (urllib.error.URLError, OSError) as e:
            # Fail closed: no answer is no allow.
            raise Denied(["keyscope-unreachable"], [str(e)]) from e

    def reserve(self, key_id, model, request_id, input_tokens=0, max_output_tokens=None,
                source_ip=None, action="invoke"):
        """Decides and holds the worst-case cost; returns the hold, or raises Denied."""
        context = {"request_id": request_id, "reserve": True, "input_tokens": input_tokens}
        if max_output_tokens is not None:
            context["max_output_tokens"] = max_output_tokens
        if source_ip:
            context["source_ip"] = source_ip
        answer = self._post("/access/v1/evaluation", {
            "subject": {"type": "Key", "id": key_id},
            "action": {"name": action},
            "resource": {"type": "Model", "id": model},
            "context": context,
        })
        ctx = answer.get("context", {})
        reasons = [r.get("id", "") for r in ctx.get("reasons", [])]
        if answer.get("decision") is not True:
            raise Denied(reasons, ctx.get("errors", []))
        holds = [o for o in ctx.get("obligations", []) if o.get("id") == "keyscope:budget-hold"]
        if not holds:
            # An allow that asked for a hold and carries none cannot be honoured.
            raise Denied(["keyscope:no-hold"], [])
        return holds[0]

    def commit(self, hold, input_tokens=0, output_tokens=0, cached_input_tokens=0):
        """Replaces the hold with the actual usage; safe to retry."""
        return self._post("/v1/usage/%s/commit" % hold["request_id"], {
            "input_tokens": input_tokens,
            "cached_input_tokens": cached_input_tokens,
            "output_tokens": output_tokens,
        })

    def release(self, hold):
        """Returns the hold when the call did not run; safe to retry."""
        return self._post("/v1/usage/%s/release" % hold["request_id"], {})


def main(argv):
    """`python3 keyscope_gate.py URL KEY_ID MODEL REQUEST_ID`: reserve, commit 100 tokens."""
    url, key_id, model, request_id = argv[1:5]
    gate = KeyscopeGate(url)
    try:
        hold = gate.reserve(key_id, model, request_id, input_tokens=100, max_output_tokens=100)
    except Denied as denied:
        print("denied: " + ", ".join(denied.reasons))
        return 1
    settled = gate.commit(hold, input_tokens=80, output_tokens=20)
    print("allowed: held %d micro-dollars, committed %d" % (hold["held_micros"],
                                                             settled["cost_micros"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
