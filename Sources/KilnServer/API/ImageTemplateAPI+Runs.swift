import Foundation
import Hummingbird
import KilnCore
import KilnStore
import KilnTemplates

/// run, cancel, runOutputs and the operation-status resource.
extension ImageTemplateAPI {
    /// POST run: queues a run (templates a repository manages may be run too) and answers 202; the operation
    /// stays InProgress until the build ends.
    func run(_ r: APIRequest, _ a: TemplateAddress) async throws -> APIResponse {
        let t = try await resource(a)
        let run = try await core.queueRun(t)
        let op = OperationRecord(kind: .run, resourceId: t.record.id, subscription: a.subscription, location: t.template.location, runId: run.id)
        try await core.startOperation(op)
        onRunQueued()
        logger.info("api: run queued", metadata: ["template": "\(t.record.id)", "run": "\(run.id)", "by": "\(r.caller.name)"])
        return accepted(r, op, retryAfter: Self.runRetryAfter)
    }

    /// POST cancel: asks the active run to stop; the operation ends when the run has.
    func cancel(_ r: APIRequest, _ a: TemplateAddress) async throws -> APIResponse {
        let t = try await resource(a)
        let run = try await core.cancel(t.record.id)
        let op = OperationRecord(kind: .cancel, resourceId: t.record.id, subscription: a.subscription, location: t.template.location, runId: run.id)
        try await core.startOperation(op)
        logger.info("api: run cancel requested", metadata: ["template": "\(t.record.id)", "run": "\(run.id)", "by": "\(r.caller.name)"])
        return accepted(r, op, retryAfter: Self.retryAfter)
    }

    /// 202 with both polling headers: the SDK polls `Azure-AsyncOperation`, then GETs `Location` once at the end.
    func accepted(_ r: APIRequest, _ op: OperationRecord, retryAfter: String) -> APIResponse {
        let url = statusURL(r, op)
        return APIResponse(status: .accepted, headers: [("Azure-AsyncOperation", url), ("Location", url), ("Retry-After", retryAfter)])
    }

    /// The run outputs of the newest run that has any (AIB keeps the last run's).
    func runOutputs(_ a: TemplateAddress, name: String?) async throws -> APIResponse {
        let t = try await resource(a)
        let outputs = try await core.runs(t.record.id).first { !$0.outputs.isEmpty }?.outputs ?? []
        let docs = outputs.map { RunOutputDocument($0, templateId: t.record.id) }
        guard let name else { return .json(.ok, PageDocument(value: docs, nextLink: nil)) }
        guard let doc = docs.first(where: { $0.name.caseInsensitiveCompare(name) == .orderedSame }) else {
            throw ARMError.resourceNotFound(RunOutputDocument.resourceType + "/" + name, "image template '\(t.name)'")
        }
        return .json(.ok, doc)
    }

    /// GET of an operation: its status document. Polled through `Location`, a delete in progress answers 202 (the
    /// SDK's Location polling ends at the first other 2xx); through `Azure-AsyncOperation` the body tells.
    func operationStatus(_ r: APIRequest, _ id: String) async throws -> APIResponse {
        guard let op = try await core.operation(id: id), r.caller.covers(op.resourceId) else {
            throw ARMError.resourceNotFound(ARMRoute.provider + "/locations/operations/" + id, "subscription '\(r.route.subscription ?? "")'")
        }
        let pending = !op.status.isTerminal && (op.kind == .deleteTemplate || op.kind == .deleteTrigger)
        return .json(pending ? .accepted : .ok, OperationStatusDocument(op), headers: op.status.isTerminal ? [] : [("Retry-After", Self.retryAfter)])
    }
}

/// An operation's status as ARM reports it: `{id, name, status, startTime, endTime, error}`.
struct OperationStatusDocument: Encodable, Sendable {
    struct ErrorBody: Encodable, Sendable {
        var code: String
        var message: String
    }
    var id: String
    var name: String
    var status: String
    var startTime: String
    var endTime: String?
    var error: ErrorBody?
    var resourceId: String

    init(_ op: OperationRecord) {
        id = "/subscriptions/\(op.subscription)/providers/\(ARMRoute.provider)/locations/\(op.location)/operations/\(op.id)"
        name = op.id
        status = op.status.rawValue
        startTime = op.startTime.iso8601
        endTime = op.endTime?.iso8601
        error = op.status == .failed || op.status == .canceled ? ErrorBody(code: op.errorCode ?? "Failed", message: op.errorMessage ?? "") : nil
        resourceId = op.resourceId
    }
}

/// `GET /providers/Microsoft.VirtualMachineImages/operations`: what the provider offers.
struct ProviderOperation: Encodable, Sendable {
    struct Display: Encodable, Sendable {
        var provider = "Microsoft Virtual Machine Images (Kiln)"
        var resource: String
        var operation: String
        var description: String
    }
    var name: String
    var display: Display
    var origin = "user,system"
    var isDataAction = false

    static let all: [ProviderOperation] = [
        ("imageTemplates/read", "Image Templates", "Get Image Template", "Gets an image template or lists them"),
        ("imageTemplates/write", "Image Templates", "Create or Update Image Template", "Creates an image template, or changes its tags"),
        ("imageTemplates/delete", "Image Templates", "Delete Image Template", "Deletes an image template"),
        ("imageTemplates/run/action", "Image Templates", "Run Image Template", "Builds the image of a template"),
        ("imageTemplates/cancel/action", "Image Templates", "Cancel Image Template", "Cancels the running build of a template"),
        ("imageTemplates/runOutputs/read", "Run Outputs", "Get Run Output", "Gets a run output or lists them"),
        ("imageTemplates/triggers/read", "Triggers", "Get Trigger", "Gets a trigger or lists them"),
        ("imageTemplates/triggers/write", "Triggers", "Create Trigger", "Creates a trigger"),
        ("imageTemplates/triggers/delete", "Triggers", "Delete Trigger", "Deletes a trigger"),
        ("locations/operations/read", "Operations", "Get Operation", "Gets the status of an asynchronous operation"),
        ("operations/read", "Operations", "List Operations", "Lists the operations of the provider")
    ].map { ProviderOperation(name: ARMRoute.provider + "/" + $0.0, display: Display(resource: $0.1, operation: $0.2, description: $0.3)) }
}
