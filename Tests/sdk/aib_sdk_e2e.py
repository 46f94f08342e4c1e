"""Drives `kiln serve` with Azure's official Python SDK (azure-mgmt-imagebuilder 2.0.0), as an AIB user would.

Usage: aib_sdk_e2e.py BASE_URL SUBSCRIPTION CONTRIBUTOR_TOKEN READER_TOKEN [CA_FILE [RESTART_DIR]]
With RESTART_DIR, the script creates RESTART_DIR/kill-now while its real build runs and waits for RESTART_DIR/restarted:
the caller kills the server with SIGKILL and starts it again in between, and the run's poller must still end Succeeded.
With an https BASE_URL the server's certificate is checked against CA_FILE, and the SDK runs as it does against
Azure. With http every call passes enforce_https=False. Prints one line per step ("ok <step>: ...") and exits non-zero at the first step that does not behave as
AIB's does. The last line is JSON with what the caller checks outside (the canceled run's id).
"""
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.mgmt.imagebuilder import ImageBuilderClient
from azure.mgmt.imagebuilder import models as m

BASE, SUB, TOKEN, READER = sys.argv[1:5]
CA = sys.argv[5] if len(sys.argv) > 5 else None
RESTART_DIR = sys.argv[6] if len(sys.argv) > 6 else None
RG = "sdk-rg"
# Over plain (loopback) HTTP the SDK refuses to send bearer tokens unless told per call.
KW = {} if BASE.startswith("https://") else {"enforce_https": False}


class Static:
    def __init__(self, token):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3600)


def client(token):
    extra = {"connection_verify": CA} if CA else {}
    return ImageBuilderClient(Static(token), SUB, base_url=BASE, polling_interval=1, retry_total=0, **extra)


def ok(step, detail=""):
    print(f"ok {step}: {detail}", flush=True)


def template(name, inline, tags=None):
    return m.ImageTemplate(
        location="westeurope",
        tags=tags or {},
        identity=m.ImageTemplateIdentity(type="None"),
        properties=m.ImageTemplateProperties(
            source=m.ImageTemplatePlatformImageSource(publisher="Debian", offer="debian-12", sku="12", version="latest"),
            customize=[m.ImageTemplateShellCustomizer(name="step", inline=inline)],
            distribute=[m.ImageTemplateVhdDistributor(run_output_name="vhd")],
            build_timeout_in_minutes=30,
        ),
    )


c = client(TOKEN)
ops = c.virtual_machine_image_templates

# create → get → list
created = ops.begin_create_or_update(RG, "sdk-hello", template("sdk-hello", ["echo hello from the SDK | sudo tee /etc/sdk-hello"], {"team": "platform"}), **KW).result()
assert created.id.endswith("/imageTemplates/sdk-hello"), created.id
assert created.type == "Microsoft.VirtualMachineImages/imageTemplates", created.type
assert created.properties.provisioning_state == "Succeeded", created.properties.provisioning_state
ok("create", created.id)
got = ops.get(RG, "sdk-hello", **KW)
assert got.tags == {"team": "platform"}, got.tags
assert got.properties.exact_staging_resource_group, "exactStagingResourceGroup is empty"
assert got.properties.last_run_status is None, got.properties.last_run_status
ok("get", f"tags {got.tags}, staging {got.properties.exact_staging_resource_group}")
names_rg = [t.name for t in ops.list_by_resource_group(RG, **KW)]
names_sub = [t.name for t in ops.list(**KW)]
assert "sdk-hello" in names_rg and "sdk-hello" in names_sub, (names_rg, names_sub)
ok("list", f"resource group: {names_rg}; subscription: {len(names_sub)} template(s)")

# run (a real build): the LRO lasts the whole build
start = time.time()
run = ops.begin_run(RG, "sdk-hello", **KW)
if RESTART_DIR:
    # The server is killed (SIGKILL) and started again while the build runs. A client resumes its long-running
    # operation from the continuation token it kept (azure-core's way to survive a restart on either side): the
    # operation-status URL inside it must answer again, InProgress, then Succeeded. The first poller may fail while
    # the server is down; it is not used again.
    token = run.continuation_token()
    while ops.get(RG, "sdk-hello", **KW).properties.last_run_status.run_sub_state not in ("Customizing", "Validating", "Distributing"):
        time.sleep(1)
    open(os.path.join(RESTART_DIR, "kill-now"), "w").close()
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(RESTART_DIR, "restarted")):
        assert time.time() < deadline, "the server was not restarted"
        time.sleep(0.2)
    run = ops.begin_run(RG, "sdk-hello", continuation_token=token, **KW)
    assert run.status().lower() == "inprogress", run.status()
    ok("kill -9", f"server killed and restarted while the run was {ops.get(RG, 'sdk-hello', **KW).properties.last_run_status.run_sub_state}; the operation resumed from its continuation token")
run.result()
assert run.status().lower() == "succeeded", run.status()
got = ops.get(RG, "sdk-hello", **KW)
status = got.properties.last_run_status
assert status.run_state == "Succeeded", status
assert status.end_time >= status.start_time, status
ok("run", f"{status.run_state} in {time.time() - start:.0f} s ({status.message or 'no message'})")

# run outputs
outputs = list(ops.list_run_outputs(RG, "sdk-hello", **KW))
assert [o.name for o in outputs] == ["vhd"], outputs
assert outputs[0].properties.provisioning_state == "Succeeded" and outputs[0].properties.artifact_uri, outputs[0]
one = ops.get_run_output(RG, "sdk-hello", "vhd", **KW)
assert one.properties.artifact_uri == outputs[0].properties.artifact_uri
ok("runOutputs", one.properties.artifact_uri)

# patch tags
patched = ops.begin_update(RG, "sdk-hello", m.ImageTemplateUpdateParameters(tags={"team": "platform", "tier": "gold"}), **KW).result()
assert patched.tags == {"team": "platform", "tier": "gold"}, patched.tags
assert ops.get(RG, "sdk-hello", **KW).tags == patched.tags
ok("patch", f"tags {patched.tags}")

# cancel a second, slow run
ops.begin_create_or_update(RG, "sdk-slow", template("sdk-slow", ["sleep 900"]), **KW).result()
slow = ops.begin_run(RG, "sdk-slow", **KW)
deadline = time.time() + 300
while time.time() < deadline:
    s = ops.get(RG, "sdk-slow", **KW).properties.last_run_status
    if s is not None and s.run_sub_state in ("Customizing",):
        break
    time.sleep(1)
# While that build runs: 100 concurrent PUTs of distinct templates and 200 concurrent GETs, all answered.
def put(i):
    return client(TOKEN).virtual_machine_image_templates.begin_create_or_update(RG, f"sdk-many-{i}", template(f"sdk-many-{i}", ["true"]), **KW).result().name


def get(i):
    return client(READER).virtual_machine_image_templates.get(RG, f"sdk-many-{i % 100}", **KW).name


start = time.time()
with ThreadPoolExecutor(max_workers=50) as pool:
    made = sorted(pool.map(put, range(100)))
    puts = time.time() - start
    got = list(pool.map(get, range(200)))
assert made == sorted(f"sdk-many-{i}" for i in range(100)), made[:5]
assert len(got) == 200 and all(g.startswith("sdk-many-") for g in got)
assert ops.get(RG, "sdk-slow", **KW).properties.last_run_status.run_state == "Running"
ok("concurrency", f"100 PUTs in {puts:.1f} s, then 200 GETs in {time.time() - start - puts:.1f} s, while sdk-slow builds")

ops.begin_cancel(RG, "sdk-slow", **KW).result()
try:
    slow.result()
    raise AssertionError("the canceled run's poller succeeded")
except HttpResponseError:
    pass
assert slow.status().lower() == "canceled", slow.status()
final = ops.get(RG, "sdk-slow", **KW).properties.last_run_status
assert final.run_state == "Canceled", final
ok("cancel", f"run poller {slow.status()}, lastRunStatus {final.run_state}")

# delete → 404
ops.begin_delete(RG, "sdk-hello", **KW).result()
try:
    ops.get(RG, "sdk-hello", **KW)
    raise AssertionError("the deleted template is still there")
except ResourceNotFoundError as e:
    assert e.status_code == 404 and e.error.code == "ResourceNotFound", (e.status_code, e.error)
    ok("delete", f"then get: {e.status_code} {e.error.code}")

# a validation error: 400 with AIB's code and the JSON path
bad = template("sdk-bad", ["true"])
bad.properties.distribute = [m.ImageTemplateVhdDistributor(run_output_name="has space")]
try:
    ops.begin_create_or_update(RG, "sdk-bad", bad, **KW)
    raise AssertionError("an invalid template was accepted")
except HttpResponseError as e:
    assert e.status_code == 400 and e.error.code == "ValidationFailed", (e.status_code, e.error)
    assert "$.properties.distribute[0].runOutputName" in e.message, e.message
    ok("validation", e.message.splitlines()[0])

# a wrong token: 401
try:
    client("not-a-token").virtual_machine_image_templates.get(RG, "sdk-slow", **KW)
    raise AssertionError("a wrong token was accepted")
except ClientAuthenticationError as e:
    assert e.status_code == 401, e.status_code
    ok("wrong token", f"{e.status_code} {e.error.code if e.error else ''}")

# a reader writing: 403
try:
    client(READER).virtual_machine_image_templates.begin_delete(RG, "sdk-slow", **KW)
    raise AssertionError("a reader deleted a template")
except HttpResponseError as e:
    assert e.status_code == 403 and e.error.code == "AuthorizationFailed", (e.status_code, e.error)
    ok("reader writes", f"{e.status_code} {e.error.code}")

print(json.dumps({"canceledTemplate": "sdk-slow"}))
