import Foundation
import Hummingbird
import KilnCore
import KilnStore
import KilnTemplates

/// A template's SourceImage triggers (api-version 2022-07-01 on).
extension ImageTemplateAPI {
    func requireTriggerVersion(_ r: APIRequest) throws {
        guard r.apiVersion >= TriggerResource.minimumAPIVersion else {
            throw ARMError(
                .badRequest, "NoRegisteredProviderFound",
                "No registered resource provider found for API version '\(r.apiVersion)' and type 'imageTemplates/triggers'. Triggers exist from api-version \(TriggerResource.minimumAPIVersion) on."
            )
        }
    }

    func listTriggers(_ a: TemplateAddress) async throws -> APIResponse {
        let t = try await resource(a)
        return .json(.ok, PageDocument(value: try await core.triggers(template: t.record.id).map(TriggerResourceDocument.init), nextLink: nil))
    }

    func getTrigger(_ a: TemplateAddress, _ name: String) async throws -> APIResponse {
        .json(.ok, TriggerResourceDocument(try await trigger(a, name)))
    }

    func trigger(_ a: TemplateAddress, _ name: String) async throws -> TriggerRecord {
        let t = try await resource(a)
        guard let found = try await core.triggers(template: t.record.id).first(where: { $0.name.caseInsensitiveCompare(name) == .orderedSame }) else {
            throw ARMError.resourceNotFound(TriggerResource.resourceType + "/" + name, "image template '\(t.name)'")
        }
        return found
    }

    /// PUT: `{"properties": {"kind": "SourceImage"}}`. The same trigger again → 200 with it.
    func putTrigger(_ r: APIRequest, _ a: TemplateAddress, _ name: String) async throws -> APIResponse {
        try requireTriggerVersion(r)
        let t = try await resource(a)
        let kind = try Self.triggerKind(r.text, strict: r.apiVersion.isStrict)
        if let existing = try await core.triggers(template: t.record.id).first(where: { $0.name.caseInsensitiveCompare(name) == .orderedSame }),
            existing.kind == kind
        {
            return .json(.ok, TriggerResourceDocument(existing))
        }
        let made = try await core.createTrigger(template: t.record.id, name: name, kind: kind)
        let op = OperationRecord(kind: .createTrigger, resourceId: made.id, subscription: a.subscription, location: t.template.location, status: .succeeded)
        try await core.startOperation(op)
        return .json(.created, TriggerResourceDocument(made), headers: [("Azure-AsyncOperation", statusURL(r, op)), ("Retry-After", Self.retryAfter)])
    }

    func deleteTrigger(_ r: APIRequest, _ a: TemplateAddress, _ name: String) async throws -> APIResponse {
        try requireTriggerVersion(r)
        guard let existing = try? await trigger(a, name) else { return APIResponse(status: .noContent) }
        if let repo = existing.managedBy {
            throw ARMError(
                .conflict, "Conflict", "trigger \(existing.name) is managed by the git repository \(repo) (file \(existing.sourceFile ?? "?")).",
                target: existing.id)
        }
        try await core.deleteTrigger(id: existing.id)
        let t = try await resource(a)
        let op = OperationRecord(kind: .deleteTrigger, resourceId: existing.id, subscription: a.subscription, location: t.template.location, status: .succeeded)
        try await core.startOperation(op)
        return APIResponse(status: .accepted, headers: [("Location", statusURL(r, op)), ("Retry-After", Self.retryAfter)])
    }

    /// The trigger body's kind; read-only `status` and `provisioningState` are ignored, anything else unknown is
    /// refused under strict api-versions.
    static func triggerKind(_ text: String, strict: Bool) throws(ARMError) -> TriggerKind {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            throw ARMError.notJSON("a trigger body is a JSON object such as {\"properties\": {\"kind\": \"SourceImage\"}}")
        }
        let readOnly: Set<String> = ["id", "name", "type", "systemdata"]
        for key in object.keys where key != "properties" && !readOnly.contains(key.lowercased()) && strict {
            throw ARMError(.badRequest, "InvalidRequestContent", "$.\(key) is not a property of a trigger", target: "$.\(key)")
        }
        guard let props = object["properties"] as? [String: Any] else {
            throw ARMError(.badRequest, "InvalidRequestContent", "$.properties is required: {\"kind\": \"SourceImage\"}", target: "$.properties")
        }
        for key in props.keys where !["kind", "status", "provisioningstate"].contains(key.lowercased()) && strict {
            throw ARMError(.badRequest, "InvalidRequestContent", "$.properties.\(key) is not a property of a trigger", target: "$.properties.\(key)")
        }
        guard let kind = (props["kind"] as? String).flatMap({ k in TriggerKind.allCases.first { $0.rawValue.caseInsensitiveCompare(k) == .orderedSame } })
        else {
            throw ARMError(
                .badRequest, "InvalidParameter", "$.properties.kind must be one of: \(TriggerKind.allCases.map(\.rawValue).joined(separator: ", "))",
                target: "$.properties.kind")
        }
        return kind
    }
}
