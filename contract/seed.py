"""Seeds a fresh server with what the contract run's dictionaries name (contract/schemathesis.toml):
template edge_cameras, core core-0001 (registered with the local cloud's Greengrass) and its
client device sensor-01, so that generated requests also reach existing resources.

    python contract/seed.py BASE_URL
"""

import json
import sys
import time
import urllib.request

CDF = "application/vnd.aws-cdf-v1.0+json"


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": CDF, "Accept": CDF})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return response.status, dict(response.headers), json.loads(text) if text else None


def until(what, read, done, seconds=60):
    deadline = time.monotonic() + seconds
    while not done(read()):
        if time.monotonic() > deadline:
            sys.exit(f"seeding: {what} did not happen in {seconds} s")
        time.sleep(0.1)


def main(base):
    call(base, "POST", "/templates", {"name": "edge_cameras", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0"}]})
    call(base, "POST", "/applications", {"name": "shop", "compose": "services:\n  web:\n    image: public.ecr.aws/nginx/nginx:1.25\n"})
    _, headers, _ = call(base, "POST", "/coreTasks", {"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": "core-0001", "provisioningTemplate": "greengrass2_core"}]})
    task = headers["x-taskid"]
    until("core task", lambda: call(base, "GET", f"/coreTasks/{task}")[2]["taskStatus"], lambda s: s == "Success")
    until("core registration", lambda: (call(base, "GET", "/cores/core-0001")[2].get("device") or {}).get("status"), lambda s: s == "HEALTHY")
    _, headers, _ = call(base, "POST", "/cores/core-0001/deviceTasks", {"type": "Create", "devices": [{"name": "sensor-01", "provisioningTemplate": "greengrass2_client_device"}]})
    task = headers["x-taskid"]
    until("device task", lambda: call(base, "GET", f"/deviceTasks/{task}")[2]["taskStatus"], lambda s: s == "Success")


if __name__ == "__main__":
    main(sys.argv[1])
