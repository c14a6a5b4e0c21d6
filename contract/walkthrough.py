"""The README walkthrough driven through a client generated from /openapi.json by
openapi-python-client (scripts/contract.sh generates it and runs this against a fresh server).

    python contract/walkthrough.py BASE_URL

Exits non-zero, naming the step, when the server answers anything the document did not
promise: the generated client parses every body with the models of the document.
"""

import sys
import time
import uuid

from ggprov_client import Client
from ggprov_client.api.applications import create_application, get_application_version
from ggprov_client.api.client_devices import create_device_task, get_device, get_device_task, list_core_devices
from ggprov_client.api.core_software import create_software_update_task, get_fleet_software, get_software_update_task
from ggprov_client.api.core_tasks import create_core_task, get_core_task
from ggprov_client.api.cores import get_core, list_cores
from ggprov_client.api.deployment_tasks import create_deployment_task, get_deployment_task
from ggprov_client.api.fleet import get_fleet_summary
from ggprov_client.api.events import list_events
from ggprov_client.api.provisioning_templates import list_provisioning_templates
from ggprov_client.api.templates import create_template, get_template, get_template_version, list_template_versions, update_template
from ggprov_client.models import (
    ApplicationBody,
    ComponentBody,
    CoreTaskResource,
    DeploymentTargets,
    DeploymentTaskResource,
    DeviceTaskResource,
    ErrorBody,
    NewCoreBody,
    NewCoreTaskBody,
    NewDeploymentTaskBody,
    NewDeviceBody,
    NewDeviceTaskBody,
    NewSoftwareUpdate,
    NewTemplateBody,
    TemplateBody,
    TemplateRefBody,
)
from ggprov_client.models.task_type_name import TaskTypeName

CDF = "application/vnd.aws-cdf-v1.0+json"


def check(step, condition, detail=""):
    if not condition:
        sys.exit(f"walkthrough step '{step}' failed: {detail}")
    print(f"ok  {step}")


def until(step, read, done, seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            sys.exit(f"walkthrough step '{step}' did not finish in {seconds} s: {value}")
        time.sleep(0.2)


def task_succeeds(what, submitted, read, resource):
    """A task submitted (202 with x-taskid) and read until it ends: it must end in Success."""
    check(f"create {what}", submitted.status_code == 202, submitted.content)
    task_id = submitted.headers["x-taskid"]
    task = until(what, lambda: read(task_id), lambda t: t.task_status in ("Success", "Failure"))
    check(f"{what} succeeded", isinstance(task, resource) and task.task_status == "Success", task)


def main(base_url):
    client = Client(base_url=base_url, headers={"Accept": CDF}, raise_on_unexpected_status=True)

    # Templates: create, update, read versions.
    created = create_template.sync_detailed(
        client=client,
        idempotency_key=str(uuid.uuid4()),
        body=NewTemplateBody(name="edge_cameras", components=[ComponentBody(key="aws.greengrass.Cli", version="2.4.0")]),
    )
    check("create template", created.status_code == 201 and created.headers["x-version"] == "1", created.content)
    updated = update_template.sync_detailed(
        "edge_cameras",
        client=client,
        body=TemplateBody(components=[ComponentBody(key="aws.greengrass.Cli", version="2.4.0"), ComponentBody(key="aws.greengrass.LogManager", version="2.3.7")]),
    )
    check("update template", updated.status_code == 204 and updated.headers["x-version"] == "2", updated.content)
    latest = get_template.sync("edge_cameras", client=client)
    check("get template", latest.version == 2 and [c.key for c in latest.components] == ["aws.greengrass.Cli", "aws.greengrass.LogManager"], latest)
    check("get version 1", len(get_template_version.sync("edge_cameras", 1, client=client).components) == 1)
    check("list versions", [t.version for t in list_template_versions.sync("edge_cameras", client=client).templates] == [1, 2])
    check("provisioning templates", "greengrass2_core" in list_provisioning_templates.sync(client=client).templates)

    # Cores: provision two, read them.
    cores = [NewCoreBody(name=n, provisioning_template="greengrass2_core") for n in ("core-0001", "core-0002")]
    task_succeeds(
        "core task",
        create_core_task.sync_detailed(client=client, body=NewCoreTaskBody(type_=TaskTypeName.CREATE, core_version="2.12.0", cores=cores)),
        lambda task_id: get_core_task.sync(task_id, client=client),
        CoreTaskResource,
    )
    core = until("core registered", lambda: get_core.sync("core-0001", client=client), lambda c: c.device is not None and c.device.status == "HEALTHY")
    check("get core", core.name == "core-0001", core)
    check("list cores", sorted(c.name for c in list_cores.sync(client=client).cores) == ["core-0001", "core-0002"])

    # Deploy the template and watch the fleet.
    task_succeeds(
        "deployment task",
        create_deployment_task.sync_detailed(
            client=client,
            body=NewDeploymentTaskBody(template=TemplateRefBody(name="edge_cameras"), targets=DeploymentTargets(thing_names=["core-0001", "core-0002"])),
        ),
        lambda task_id: get_deployment_task.sync(task_id, client=client),
        DeploymentTaskResource,
    )
    # The core reports IN_PROGRESS first, then the deployment's outcome.
    reported = until(
        "reported",
        lambda: get_core.sync("core-0001", client=client),
        lambda c: c.template.reported is not None and c.template.reported.deployment_status not in (None, "IN_PROGRESS"),
    )
    check(
        "core reports the version",
        reported.template.reported.deployment_status == "SUCCESSFUL" and reported.template.reported.version == 2,
        reported.template,
    )
    summary = get_fleet_summary.sync(client=client)
    check("fleet summary", summary.templates["edge_cameras"].versions["2"].desired_in_use == 2, summary)

    # Client devices on core-0002.
    task_succeeds(
        "device task",
        create_device_task.sync_detailed(
            "core-0002",
            client=client,
            body=NewDeviceTaskBody(type_=TaskTypeName.CREATE, devices=[NewDeviceBody(name="sensor-01", provisioning_template="greengrass2_client_device")]),
        ),
        lambda task_id: get_device_task.sync(task_id, client=client),
        DeviceTaskResource,
    )
    check("get device", get_device.sync("sensor-01", client=client).core_name == "core-0002")
    check("core's devices", [d.name for d in list_core_devices.sync("core-0002", client=client).devices] == ["sensor-01"])

    # A Docker Compose application, deployed by a template, runs on core-0001.
    app = create_application.sync_detailed(
        client=client,
        body=ApplicationBody(name="shop", compose="services:\n  web:\n    image: public.ecr.aws/nginx/nginx:1.25\n  cache:\n    image: redis:7.2\n"),
    )
    check("create application", app.status_code == 201 and app.parsed.component_name == "ggprov.app.shop", app.content)
    check("application recipe", get_application_version.sync("shop", "1", client=client).recipe is not None)
    shop = create_template.sync_detailed(client=client, body=NewTemplateBody(name="shop_floor", components=[ComponentBody(key="ggprov.app.shop", version="1.0.0")]))
    check("template with the application", shop.status_code == 201, shop.content)
    task_succeeds(
        "application deployment",
        create_deployment_task.sync_detailed(
            client=client,
            body=NewDeploymentTaskBody(template=TemplateRefBody(name="shop_floor"), targets=DeploymentTargets(thing_names=["core-0001"])),
        ),
        lambda task_id: get_deployment_task.sync(task_id, client=client),
        DeploymentTaskResource,
    )

    def shop_containers(core):
        installed = [c.to_dict() for c in core.device.installed_components]
        return [len(c.get("containers", [])) for c in installed if c.get("name") == "ggprov.app.shop"]

    running = until("application running", lambda: get_core.sync("core-0001", client=client), lambda c: shop_containers(c) == [2])
    check("core runs the containers", shop_containers(running) == [2], running)

    # Core software: update both cores' nucleus through their templates, in two waves.
    before = get_fleet_software.sync(client=client)
    check("software summary", before.total.cores == 2 and all(r.nucleus_version == "2.12.0" for r in before.versions), before)
    update = create_software_update_task.sync_detailed(
        client=client,
        body=NewSoftwareUpdate.from_dict({
            "targets": {"thingNames": ["core-0001", "core-0002"]},
            "nucleusVersion": "2.13.0",
            "rollout": {"waves": [{"percent": 50}, {"percent": 100}]},
            "clientToken": "walkthrough-nucleus",
        }),
    )
    check("create software update", update.status_code == 201 and len(update.parsed.templates) == 2, update.content)
    updated = until(
        "software update",
        lambda: get_software_update_task.sync(update.parsed.task_id, client=client),
        lambda t: t.status in ("Success", "Failure"),
        seconds=120,
    )
    check("software update succeeded", updated.status == "Success" and all(c.nucleus_version == "2.13.0" for c in updated.cores), updated)
    after = get_fleet_software.sync(client=client)
    check("software summary moved", sum(r.cores for r in after.versions if r.nucleus_version == "2.13.0") == 2, after)
    check("cores by nucleus version", sorted(c.name for c in list_cores.sync(client=client, nucleus_version="2.13.0").cores) == ["core-0001", "core-0002"])

    # Errors come back as the documented error body.
    missing = get_template.sync_detailed("no_such_template", client=client)
    check("404 is an ErrorBody", missing.status_code == 404 and isinstance(missing.parsed, ErrorBody) and missing.parsed.error == "TEMPLATE_NOT_FOUND", missing.content)
    check("events", len(list_events.sync(client=client).events) > 0)


if __name__ == "__main__":
    main(sys.argv[1])
