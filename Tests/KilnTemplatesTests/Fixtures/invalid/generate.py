#!/usr/bin/env python3
"""Writes the negative corpus: each case is a valid base template with one or more defects, and a
.expect file listing every error Kiln must report as `CODE JSONPATH` (warnings are not listed).

The expectations are written here by hand from AIB's rules; they are not captured from Kiln's output.
Run from this directory: python3 generate.py
"""
import copy, json, os

SUB = "11111111-2222-3333-4444-555555555555"
RG = f"/subscriptions/{SUB}/resourceGroups/rg1"
GAL = f"{RG}/providers/Microsoft.Compute/galleries/g1/images/def1"
IDENT = f"{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aib"

BASE = {
    "type": "Microsoft.VirtualMachineImages/imageTemplates",
    "apiVersion": "2025-10-01",
    "name": "neg",
    "location": "westeurope",
    "identity": {"type": "None"},
    "properties": {
        "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
        "customize": [{"type": "Shell", "name": "s", "inline": ["true"]}],
        "distribute": [{"type": "VHD", "runOutputName": "vhd"}],
    },
}
SIG = {"type": "SharedImage", "runOutputName": "sig", "galleryImageId": GAL, "targetRegions": [{"name": "westeurope"}]}
P = "$.properties"
cases = []

def case(name, expect, mutate=None, text=None, ext="json", extra_files=None):
    cases.append((name, expect, mutate, text, ext, extra_files or {}))

def props(f):
    def m(t):
        f(t["properties"])
    return m

def cust(c):
    return props(lambda p: p.__setitem__("customize", [c]))

def dist(*d):
    return props(lambda p: p.__setitem__("distribute", list(d)))

# Envelope
case("missing-location", [("InvalidParameter", "$.location")], lambda t: t.pop("location"))
case("missing-identity", [("InvalidParameter", "$.identity")], lambda t: t.pop("identity"))
case("missing-properties", [("InvalidRequestContent", "$.properties")], lambda t: t.pop("properties"))
case("bad-template-name", [("InvalidParameter", "$.name")], lambda t: t.__setitem__("name", "my template!"))
case("identity-userassigned-empty", [("InvalidParameter", "$.identity.userAssignedIdentities")],
     lambda t: t.__setitem__("identity", {"type": "UserAssigned"}))
case("identity-bad-id", [("InvalidParameter", "$.identity.userAssignedIdentities['/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/x']")],
     lambda t: t.__setitem__("identity", {"type": "UserAssigned", "userAssignedIdentities": {"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/x": {}}}))
case("identity-two", [("InvalidParameter", "$.identity.userAssignedIdentities")],
     lambda t: t.__setitem__("identity", {"type": "UserAssigned", "userAssignedIdentities": {IDENT: {}, IDENT + "2": {}}}))
case("identity-none-with-ids", [("InvalidParameter", "$.identity.userAssignedIdentities")],
     lambda t: t.__setitem__("identity", {"type": "None", "userAssignedIdentities": {IDENT: {}}}))
case("tags-not-strings", [("InvalidParameter", "$.tags.owner")], lambda t: t.__setitem__("tags", {"owner": {"name": "x"}}))
case("unknown-property-strict", [("InvalidRequestContent", "$.properties.buildTimeout")],
     props(lambda p: p.__setitem__("buildTimeout", 30)))
def wrong_case(t):
    t["properties"]["Source"] = t["properties"].pop("source")
case("wrong-case-strict", [("InvalidRequestContent", "$.properties.Source"), ("BadSourceType", "$.properties.source")], wrong_case)
case("apiversion-retired", [("NoRegisteredProviderFound", "$.apiVersion")], lambda t: t.__setitem__("apiVersion", "2019-05-01-preview"))
case("apiversion-garbage", [("NoRegisteredProviderFound", "$.apiVersion")], lambda t: t.__setitem__("apiVersion", "latest"))
case("placeholders", [("UnfilledPlaceholder", "$.location")],
     lambda t: (t.__setitem__("location", "<region>"), t["properties"]["distribute"].append(
         {"type": "ManagedImage", "runOutputName": "<runOutputName>", "location": "<region>",
          "imageId": "/subscriptions/<subscriptionID>/resourceGroups/<rgName>/providers/Microsoft.Compute/images/<imageName>"})))
# Source
case("missing-source", [("BadSourceType", "$.properties.source")], props(lambda p: p.pop("source")))
case("source-type-missing", [("BadSourceType", "$.properties.source.type")], props(lambda p: p["source"].pop("type")))
case("source-type-unknown", [("BadSourceType", "$.properties.source.type")], props(lambda p: p["source"].__setitem__("type", "Marketplace")))
case("source-iso", [("BadSourceType", "$.properties.source.type")],
     props(lambda p: p.__setitem__("source", {"type": "ISO", "sourceUri": "https://example.com/x.iso", "sha256Checksum": "0" * 64})))
case("pir-missing-sku", [("BadPIRSource", "$.properties.source.sku")], props(lambda p: p["source"].pop("sku")))
case("pir-bad-version", [("BadPIRSource", "$.properties.source.version")], props(lambda p: p["source"].__setitem__("version", "1.2")))
case("pir-planinfo-incomplete", [("BadPIRSource", "$.properties.source.planInfo.planProduct"), ("BadPIRSource", "$.properties.source.planInfo.planPublisher")],
     props(lambda p: p["source"].__setitem__("planInfo", {"planName": "x"})))
case("managed-source-bad-id", [("BadManagedImageSource", "$.properties.source.imageId")],
     props(lambda p: p.__setitem__("source", {"type": "ManagedImage", "imageId": GAL})))
case("managed-source-missing-id", [("BadManagedImageSource", "$.properties.source.imageId")],
     props(lambda p: p.__setitem__("source", {"type": "ManagedImage"})))
case("siv-no-version", [("BadSharedImageVersionSource", "$.properties.source.imageVersionId")],
     props(lambda p: p.__setitem__("source", {"type": "SharedImageVersion", "imageVersionId": GAL})))
case("siv-bad-version", [("BadSharedImageVersionSource", "$.properties.source.imageVersionId")],
     props(lambda p: p.__setitem__("source", {"type": "SharedImageVersion", "imageVersionId": GAL + "/versions/v1"})))
# Customizers
case("customizer-unknown-type", [("BadCustomizerType", "$.properties.customize[0].type")], cust({"type": "Ansible", "playbook": "x.yml"}))
case("customizer-missing-type", [("BadCustomizerType", "$.properties.customize[0].type")], cust({"name": "x", "inline": ["true"]}))
case("shell-no-script", [("NoCustomizerScript", "$.properties.customize[0].scriptUri")], cust({"type": "Shell", "name": "x"}))
case("shell-both-scripts", [("BadCustomizerType", "$.properties.customize[0].inline")],
     cust({"type": "Shell", "scriptUri": "https://example.com/a.sh", "inline": ["true"]}))
case("shell-empty-inline", [("NoCustomizerScript", "$.properties.customize[0].inline")], cust({"type": "Shell", "inline": []}))
case("shell-bad-sha256", [("BadCustomizerType", "$.properties.customize[0].sha256Checksum")],
     cust({"type": "Shell", "scriptUri": "https://example.com/a.sh", "sha256Checksum": "abc123"}))
case("shell-bad-scheme", [("BadCustomizerType", "$.properties.customize[0].scriptUri")],
     cust({"type": "Shell", "scriptUri": "ftp://example.com/a.sh"}))
case("file-relative-destination", [("BadCustomizerType", "$.properties.customize[0].destination")],
     cust({"type": "File", "sourceUri": "https://example.com/f", "destination": "tmp/f"}))
case("file-missing-source", [("NoCustomizerScript", "$.properties.customize[0].sourceUri")],
     cust({"type": "File", "destination": "/tmp/f"}))
case("powershell-system-not-elevated", [("BadCustomizerType", "$.properties.customize[0].runAsSystem")],
     cust({"type": "PowerShell", "inline": ["Get-Date"], "runAsSystem": True}))
case("powershell-exit-codes", [("BadCustomizerType", "$.properties.customize[0].validExitCodes[1]")],
     cust({"type": "PowerShell", "inline": ["Get-Date"], "validExitCodes": [0, "3010"]}))
case("restart-timeout-format", [("BadCustomizerType", "$.properties.customize[0].restartTimeout")],
     cust({"type": "WindowsRestart", "restartTimeout": "5 minutes"}))
case("update-limit-negative", [("BadCustomizerType", "$.properties.customize[0].updateLimit")],
     cust({"type": "WindowsUpdate", "updateLimit": -1}))
# Validation
case("validator-unknown-type", [("BadValidatorType", "$.properties.validate.inVMValidations[0].type")],
     props(lambda p: p.__setitem__("validate", {"inVMValidations": [{"type": "WindowsRestart"}]})))
case("validator-no-script", [("NoValidatorScript", "$.properties.validate.inVMValidations[0].scriptUri")],
     props(lambda p: p.__setitem__("validate", {"inVMValidations": [{"type": "Shell", "name": "v"}]})))
case("source-validation-only-empty", [("BadValidatorType", "$.properties.validate.sourceValidationOnly")],
     props(lambda p: p.__setitem__("validate", {"sourceValidationOnly": True})))
# Distribution
case("distribute-missing", [("BadDistributeType", "$.properties.distribute")], props(lambda p: p.pop("distribute")))
case("distribute-empty", [("BadDistributeType", "$.properties.distribute")], dist())
case("distribute-unknown-type", [("BadDistributeType", "$.properties.distribute[0].type")], dist({"type": "Blob", "runOutputName": "b"}))
case("run-output-duplicate", [("BadDistributeType", "$.properties.distribute[1].runOutputName")],
     dist({"type": "VHD", "runOutputName": "out"}, {"type": "VHD", "runOutputName": "OUT"}))
case("run-output-bad-name", [("BadDistributeType", "$.properties.distribute[0].runOutputName")], dist({"type": "VHD", "runOutputName": "my output"}))
case("run-output-missing", [("BadDistributeType", "$.properties.distribute[0].runOutputName")], dist({"type": "VHD"}))
case("managed-dist-no-location", [("BadDistributeType", "$.properties.distribute[0].location")],
     dist({"type": "ManagedImage", "runOutputName": "m", "imageId": f"{RG}/providers/Microsoft.Compute/images/i"}))
case("managed-dist-bad-id", [("BadDistributeType", "$.properties.distribute[0].imageId")],
     dist({"type": "ManagedImage", "runOutputName": "m", "imageId": f"{RG}/providers/Microsoft.Compute/disks/i", "location": "westeurope"}))
case("sig-target-and-replication", [("BadSharedImageDistribute", "$.properties.distribute[0].replicationRegions")],
     dist(dict(SIG, replicationRegions=["northeurope"])))
case("sig-storage-with-target-regions", [("BadSharedImageDistribute", "$.properties.distribute[0].storageAccountType")],
     dist(dict(SIG, storageAccountType="Standard_LRS")))
case("sig-replica-count-zero", [("BadSharedImageDistribute", "$.properties.distribute[0].targetRegions[0].replicaCount")],
     dist(dict(SIG, targetRegions=[{"name": "westeurope", "replicaCount": 0}])))
case("sig-bad-storage-type", [("BadSharedImageDistribute", "$.properties.distribute[0].targetRegions[0].storageAccountType")],
     dist(dict(SIG, targetRegions=[{"name": "westeurope", "storageAccountType": "Premium_ZRS"}])))
case("sig-duplicate-region", [("BadSharedImageDistribute", "$.properties.distribute[0].targetRegions[1].name")],
     dist(dict(SIG, targetRegions=[{"name": "westeurope"}, {"name": "West Europe"}])))
case("sig-bad-gallery-id", [("BadSharedImageDistribute", "$.properties.distribute[0].galleryImageId")],
     dist(dict(SIG, galleryImageId=f"{RG}/providers/Microsoft.Compute/images/i")))
case("sig-bad-explicit-version", [("BadSharedImageDistribute", "$.properties.distribute[0].galleryImageId")],
     dist(dict(SIG, galleryImageId=GAL + "/versions/latest")))
case("sig-bad-versioning-scheme", [("BadSharedImageDistribute", "$.properties.distribute[0].versioning.scheme")],
     dist(dict(SIG, versioning={"scheme": "Semver"})))
case("sig-versioning-with-explicit", [("BadSharedImageDistribute", "$.properties.distribute[0].versioning")],
     dist(dict(SIG, galleryImageId=GAL + "/versions/1.0.0", versioning={"scheme": "Latest"})))
case("sig-major-with-source", [("BadSharedImageDistribute", "$.properties.distribute[0].versioning.major")],
     dist(dict(SIG, versioning={"scheme": "Source", "major": 2})))
case("vhd-relative-uri", [("BadDistributeType", "$.properties.distribute[0].uri")], dist({"type": "VHD", "runOutputName": "v", "uri": "out/x.vhd"}))
# Other settings
case("timeout-too-long", [("InvalidParameter", "$.properties.buildTimeoutInMinutes")], props(lambda p: p.__setitem__("buildTimeoutInMinutes", 961)))
case("timeout-negative", [("InvalidParameter", "$.properties.buildTimeoutInMinutes")], props(lambda p: p.__setitem__("buildTimeoutInMinutes", -1)))
case("staging-not-group-id", [("BadStagingResourceGroup", "$.properties.stagingResourceGroup")],
     props(lambda p: p.__setitem__("stagingResourceGroup", "my-staging-rg")))
case("subnet-bad-id", [("InvalidParameter", "$.properties.vmProfile.vnetConfig.subnetId")],
     props(lambda p: p.__setitem__("vmProfile", {"vnetConfig": {"subnetId": f"{RG}/providers/Microsoft.Network/virtualNetworks/v1"}})))
case("os-disk-string-strict", [("InvalidParameter", "$.properties.vmProfile.osDiskSizeGB")],
     props(lambda p: p.__setitem__("vmProfile", {"osDiskSizeGB": "30"})))
case("error-handling-bad", [("InvalidParameter", "$.properties.errorHandling.onCustomizerError")],
     props(lambda p: p.__setitem__("errorHandling", {"onCustomizerError": "keep"})))
case("autorun-bad-state", [("InvalidParameter", "$.properties.autoRun.state")], props(lambda p: p.__setitem__("autoRun", {"state": "On"})))
case("data-disk-zero", [("InvalidParameter", "$.properties.additionalDataDisks[0].sizeGB")],
     props(lambda p: p.__setitem__("additionalDataDisks", [{"sizeGB": 0}])))
case("vm-identity-bad", [("InvalidParameter", "$.properties.vmProfile.userAssignedIdentities[0]")],
     props(lambda p: p.__setitem__("vmProfile", {"userAssignedIdentities": ["aib-identity"]})))
# Several problems in one file: all reported.
def many(t):
    t.pop("location")
    p = t["properties"]
    p["buildTimeoutInMinutes"] = 1000
    p["customize"] = [{"type": "Shell", "scriptUri": "https://example.com/a.sh", "sha256Checksum": "xyz"},
                      {"type": "File", "sourceUri": "https://example.com/f", "destination": "relative/f"}]
    p["distribute"] = [{"type": "VHD", "runOutputName": "o"}, dict(SIG, runOutputName="o", replicationRegions=["x"])]
case("many-problems", [
    ("InvalidParameter", "$.location"),
    ("InvalidParameter", "$.properties.buildTimeoutInMinutes"),
    ("BadCustomizerType", "$.properties.customize[0].sha256Checksum"),
    ("BadCustomizerType", "$.properties.customize[1].destination"),
    ("BadDistributeType", "$.properties.distribute[1].runOutputName"),
    ("BadSharedImageDistribute", "$.properties.distribute[1].replicationRegions"),
], many)
# Syntax
case("json-syntax", [("InvalidRequestContent", "$")], text='{\n  "location": "westeurope",\n  "identity": {"type": "None"}\n  "properties": {}\n}\n')
case("json-duplicate-key", [("InvalidRequestContent", "$")], text='{\n  "location": "westeurope",\n  "location": "northeurope"\n}\n')
# YAML
case("yaml-problems", [("BadPIRSource", "$.properties.source.sku"), ("BadSharedImageDistribute", "$.properties.distribute[0].versioning.scheme")], ext="yaml", text="""\
apiVersion: "2025-10-01"
name: yaml-neg
location: westeurope
identity: {type: None}
properties:
  source: {type: PlatformImage, publisher: Debian, offer: debian-12, version: latest}
  distribute:
    - type: SharedImage
      runOutputName: sig
      galleryImageId: %s
      versioning: {scheme: Newest}
""" % GAL)
# ARM deployment templates
DEPLOY = {
    "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
    "contentVersion": "1.0.0.0",
    "parameters": {"imageTemplateName": {"type": "string"}, "location": {"type": "string", "defaultValue": "westeurope"}},
    "variables": {},
    "resources": [dict(copy.deepcopy(BASE), name="[parameters('imageTemplateName')]", location="[parameters('location')]")],
}
def deploy_case(name, expect, mutate=None, params=None):
    d = copy.deepcopy(DEPLOY)
    if mutate: mutate(d)
    extra = {}
    if params is not None:
        extra[name + ".parameters.json"] = {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
                                            "contentVersion": "1.0.0.0", "parameters": params}
    case(name, expect, text=json.dumps(d, indent=2) + "\n", extra_files=extra)
deploy_case("arm-missing-parameter", [("InvalidTemplate", "$.parameters.imageTemplateName")])
deploy_case("arm-unsupported-function", [("InvalidTemplate", "$.resources[0].location")],
            lambda d: d["resources"][0].__setitem__("location", "[reference('x').location]"), params={"imageTemplateName": {"value": "t1"}})
deploy_case("arm-unknown-param-in-file", [("InvalidTemplate", "$.parameters.notDeclared")],
            params={"imageTemplateName": {"value": "t1"}, "notDeclared": {"value": 1}})
deploy_case("arm-param-type-mismatch", [("InvalidTemplate", "$.parameters.imageTemplateName")], params={"imageTemplateName": {"value": 42}})
deploy_case("arm-bad-expression-syntax", [("InvalidTemplate", "$.resources[0].name")],
            lambda d: d["resources"][0].__setitem__("name", "[concat('a', parameters('imageTemplateName')]"), params={"imageTemplateName": {"value": "t1"}})
deploy_case("arm-undefined-variable", [("InvalidTemplate", "$.resources[0].properties.customize[0].name")],
            lambda d: d["resources"][0]["properties"]["customize"][0].__setitem__("name", "[variables('missing')]"), params={"imageTemplateName": {"value": "t1"}})
deploy_case("arm-template-errors-inside", [("BadPIRSource", "$.resources[0].properties.source.publisher")],
            lambda d: d["resources"][0]["properties"]["source"].pop("publisher"), params={"imageTemplateName": {"value": "t1"}})
deploy_case("arm-copy-loop", [("InvalidTemplate", "$.resources[0].copy")],
            lambda d: d["resources"][0].__setitem__("copy", {"name": "c", "count": 2}), params={"imageTemplateName": {"value": "t1"}})
deploy_case("arm-allowed-values", [("InvalidTemplate", "$.parameters.location")],
            lambda d: d["parameters"]["location"].__setitem__("allowedValues", ["westus", "eastus"]), params={"imageTemplateName": {"value": "t1"}})

here = os.path.dirname(os.path.abspath(__file__))
for f in os.listdir(here):
    if f[0:2].isdigit():
        os.remove(os.path.join(here, f))
for i, (name, expect, mutate, text, ext, extra) in enumerate(cases, 1):
    stem = f"{i:02d}-{name}"
    if text is None:
        t = copy.deepcopy(BASE)
        mutate(t)
        text = json.dumps(t, indent=2) + "\n"
    with open(os.path.join(here, f"{stem}.{ext}"), "w") as fh:
        fh.write(text)
    with open(os.path.join(here, f"{stem}.expect"), "w") as fh:
        for code, path in expect:
            fh.write(f"{code} {path}\n")
    for fname, content in extra.items():
        with open(os.path.join(here, f"{i:02d}-{fname}"), "w") as fh:
            fh.write(json.dumps(content, indent=2) + "\n")
print(f"{len(cases)} cases")
