import Foundation
import KilnStore
import KilnTemplates

/// The ARM/AIB JSON shapes of the core's resources: what `kiln template show --output json` prints and the
/// REST API returns.
extension TemplateResource {
    /// The imageTemplates resource with its read-only properties, as AIB's GET returns it, plus a `kiln`
    /// object with what AIB keeps hidden (content hash, origin, staging path, the run's logs and phases).
    public func resourceJSON(lastRun: RunRecord?) -> [String: Any] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var root = ((try? encoder.encode(template)).flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any]) ?? [:]
        root["id"] = record.id
        root["type"] = "Microsoft.VirtualMachineImages/imageTemplates"
        var props = root["properties"] as? [String: Any] ?? [:]
        props["provisioningState"] = record.provisioningState
        if let code = record.provisioningErrorCode {
            props["provisioningError"] = ["provisioningErrorCode": code, "message": record.provisioningErrorMessage ?? ""]
        }
        props["exactStagingResourceGroup"] = record.stagingResourceGroup
        if let lastRun {
            props["lastRunStatus"] = lastRun.lastRunStatusJSON
            if let v = lastRun.sourceExactVersion, var source = props["source"] as? [String: Any] {
                source["exactVersion"] = v
                props["source"] = source
            }
        }
        root["properties"] = props
        var kiln: [String: Any] = [
            "contentHash": record.contentHash,
            "stagingDirectory": record.stagingDirectory,
            "artifacts": record.artifacts.map { ["reference": $0.reference, "path": $0.path, "sha256": $0.sha256, "size": $0.size] as [String: Any] },
            "createdAt": record.createdAt.iso8601,
        ]
        if let f = record.sourceFile { kiln["sourceFile"] = f }
        if let c = record.sourceCommit { kiln["sourceCommit"] = c }
        if let lastRun { kiln["lastRun"] = lastRun.json }
        root["kiln"] = kiln
        return root
    }
}

extension RunRecord {
    public var lastRunStatusJSON: [String: Any] {
        var s: [String: Any] = ["runState": runState, "message": message ?? "", "startTime": queuedAt.iso8601]
        if let sub = runSubState { s["runSubState"] = sub }
        if let e = endTime { s["endTime"] = e.iso8601 }
        return s
    }

    /// Everything Kiln records about a run.
    public var json: [String: Any] {
        var o: [String: Any] = [
            "runId": id, "templateId": templateId, "runState": runState, "message": message ?? "",
            "queuedAt": queuedAt.iso8601, "phaseSeconds": phaseSeconds, "logDirectory": logDirectory,
            "customizationLog": (logDirectory as NSString).appendingPathComponent("customization.log"),
            "timeoutMinutes": timeoutMinutes,
            "runOutputs": outputs.map(\.json),
        ]
        if let v = runSubState { o["runSubState"] = v }
        if let v = startTime { o["startTime"] = v.iso8601 }
        if let v = endTime { o["endTime"] = v.iso8601 }
        if let v = sourceReference { o["source"] = v }
        if let v = sourceExactVersion { o["sourceExactVersion"] = v }
        if let v = artifactPath { o["artifactPath"] = v }
        if let v = artifactSha256 { o["artifactSha256"] = v }
        if let v = artifactSize { o["artifactSize"] = v }
        if let v = owner { o["ownerPid"] = v.pid }
        if cancelRequested { o["cancelRequested"] = true }
        return o
    }
}

extension RunOutputRecord {
    /// A runOutputs child resource's body.
    public var json: [String: Any] {
        var p: [String: Any] = ["provisioningState": provisioningState]
        if let v = artifactId { p["artifactId"] = v }
        if let v = artifactUri { p["artifactUri"] = v }
        var o: [String: Any] = ["name": name, "type": "Microsoft.VirtualMachineImages/imageTemplates/runOutputs", "properties": p]
        var kiln: [String: Any] = [:]
        if let m = message { kiln["message"] = m }
        if let s = seconds { kiln["seconds"] = s }
        if !kiln.isEmpty { o["kiln"] = kiln }
        return o
    }
}
