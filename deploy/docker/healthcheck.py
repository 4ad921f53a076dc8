"""Container HEALTHCHECK for the vidpose images (stdlib only: runs in every image).

    python healthcheck.py api      GET http://127.0.0.1:$VIDPOSE_API_PORT/healthz   (process up)
    python healthcheck.py worker   GET http://127.0.0.1:$VIDPOSE_WORKER_METRICS_PORT/readyz
                                   (model loaded, warm and not draining)

Exit 0 when the endpoint answers 200, 1 otherwise (Docker's healthy/unhealthy).
The API checks /healthz, not /readyz: /readyz also needs a live worker, and an API
with no worker yet is still a healthy container. Kubernetes uses httpGet probes
instead of this script (deploy/kubernetes).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

# role -> (port env var, default port, path)
TARGETS = {
    "api": ("VIDPOSE_API_PORT", 8000, "/healthz"),
    "worker": ("VIDPOSE_WORKER_METRICS_PORT", 9100, "/readyz"),
}


def target_url(role: str, env: dict[str, str]) -> str:
    """The URL to probe for a role, honouring the port settings in env."""
    var, default, path = TARGETS[role]
    port = int(env.get(var, default))
    if port == 0:
        raise ValueError(f"{var}=0: the {role} serves no health endpoint, so it cannot be checked")
    host = env.get("VIDPOSE_HEALTHCHECK_HOST", "127.0.0.1")
    return f"http://{host}:{port}{path}"


def check(url: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status == 200, f"{url} -> {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url} -> {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url} -> {exc}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in TARGETS:
        print(f"usage: healthcheck.py {'|'.join(TARGETS)}", file=sys.stderr)
        return 2
    try:
        url = target_url(argv[0], dict(os.environ))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    ok, detail = check(url)
    print(detail)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
