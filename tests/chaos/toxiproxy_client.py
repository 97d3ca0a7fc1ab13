#!/usr/bin/env python3
"""Drives the chaos agent with the published Toxiproxy client library
(PyPI `toxiproxy-python`, unmodified), for tests/chaos_agent.rs.

Reads one JSON command per line on stdin and answers one JSON line on stdout:
{"ok": <result>} or {"error": "<exception class>", "detail": "..."}.
Only the library talks to the agent; this file just maps commands onto it.
"""
import json
import sys

from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer


def proxy_json(p):
    return {"name": p.name, "listen": p.listen, "upstream": p.upstream, "enabled": p.enabled}


def run(server, cmd):
    op = cmd["op"]
    if op == "version":
        return server.version().decode()
    if op == "running":
        return server.running()
    if op == "create":
        p = server.create(upstream=cmd["upstream"], name=cmd["name"], listen=cmd.get("listen"),
                          enabled=cmd.get("enabled"))
        return proxy_json(p)
    if op == "proxies":
        return {name: proxy_json(p) for name, p in server.proxies().items()}
    if op == "populate":
        return [proxy_json(p) for p in server.populate(cmd["proxies"])]
    if op == "reset":
        return server.reset()
    if op == "destroy_all":
        server.destroy_all()
        return True
    proxy = server.get_proxy(cmd["proxy"])
    if proxy is None:
        raise LookupError("no proxy %r" % cmd["proxy"])
    if op == "add_toxic":
        kwargs = {k: cmd[k] for k in ("type", "stream", "name", "toxicity", "attributes") if k in cmd}
        proxy.add_toxic(**kwargs)
        return True
    if op == "toxics":
        return {name: {"type": t.type, "stream": t.stream, "toxicity": t.toxicity, "attributes": t.attributes}
                for name, t in proxy.toxics().items()}
    if op == "destroy_toxic":
        return proxy.destroy_toxic(cmd["name"])
    if op == "disable":
        proxy.disable()
        return True
    if op == "enable":
        proxy.enable()
        return True
    if op == "destroy":
        return proxy.destroy()
    raise ValueError("unknown op %r" % op)


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    server = Toxiproxy()
    server.update_api_consumer(host, int(port))
    assert APIConsumer.port == int(port)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            out = {"ok": run(server, json.loads(line))}
        except Exception as e:  # reported to the test, which decides
            detail = e.args[0] if e.args else ""
            if isinstance(detail, bytes):
                detail = detail.decode(errors="replace")
            out = {"error": type(e).__name__, "detail": str(detail)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
