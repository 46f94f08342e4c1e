import Foundation
import Hummingbird
import KilnCore
import KilnStore
import KilnTemplates
import Logging

/// The AIB REST API over the core: what each route and method does. Transport-free (see `APIServer` for the
/// HTTP side), so every answer can be tested without a socket.
public struct ImageTemplateAPI: Sendable {
    public let core: KilnCore
    public let logger: Logger
    /// Items per list page before a `nextLink`.
    public var pageSize: Int
    /// What template artifact references may reach (the configuration's `artifacts`).
    public var artifactPolicy: ArtifactPolicy
    /// Called after a run is queued: starts something that executes it (a background worker).
    public var onRunQueued: @Sendable () -> Void = {}

    /// A tag that lets a PUT replace a template whose content changed (delete and create, as GitOps does);
    /// without it such a PUT is refused as AIB refuses it.
    public static let replaceTag = "kiln.replace"
    /// Seconds between the SDK's polls of an operation.
    static let retryAfter = "1"
    static let runRetryAfter = "5"

    public init(core: KilnCore, logger: Logger, pageSize: Int = 100, artifactPolicy: ArtifactPolicy = .untrusted) {
        self.core = core
        self.logger = logger
        self.pageSize = pageSize
        self.artifactPolicy = artifactPolicy
    }

    /// The ARM action a request performs, for authorization and its 403 message.
    static func action(_ method: HTTPRequest.Method, _ route: ARMRoute) -> (name: String, write: Bool) {
        let p = ARMRoute.provider + "/imageTemplates"
        switch route {
        case .providerOperations: return (ARMRoute.provider + "/operations/read", false)
        case .operationStatus: return (ARMRoute.provider + "/locations/operations/read", false)
        case .action(_, let a): return ("\(p)/\(a.rawValue)/action", true)
        case .runOutputs, .runOutput: return ("\(p)/runOutputs/read", false)
        case .triggers, .trigger:
            return method == .get ? ("\(p)/triggers/read", false) : method == .delete ? ("\(p)/triggers/delete", true) : ("\(p)/triggers/write", true)
        case .templates, .template:
            return method == .get ? ("\(p)/read", false) : method == .delete ? ("\(p)/delete", true) : ("\(p)/write", true)
        }
    }

    /// Answers one request.
    public func handle(_ r: APIRequest) async -> APIResponse {
        do {
            return try await dispatch(r)
        } catch let e as ARMError {
            return .error(e)
        } catch let e as CoreError {
            if e.kind == .internalError { logger.error("api: internal error", metadata: ["route": "\(r.route.scopeId)", "error": "\(e.message)"]) }
            return .error(.core(e))
        } catch {
            logger.error("api: internal error", metadata: ["route": "\(r.route.scopeId)", "error": "\(error)"])
            return .error(ARMError(.internalServerError, "InternalServerError", "Internal error: \(error)"))
        }
    }

    func dispatch(_ r: APIRequest) async throws -> APIResponse {
        switch (r.route, r.method) {
        case (.providerOperations, .get): return .json(.ok, ListDocument(value: ProviderOperation.all))
        case (.templates(let s, let g), .get): return try await listTemplates(r, subscription: s, resourceGroup: g)
        case (.template(let a), .get): return .json(.ok, try await document(a))
        case (.template(let a), .put): return try await put(r, a)
        case (.template(let a), .patch): return try await patch(r, a)
        case (.template(let a), .delete): return try await delete(r, a)
        case (.action(let a, .run), .post): return try await run(r, a)
        case (.action(let a, .cancel), .post): return try await cancel(r, a)
        case (.runOutputs(let a), .get): return try await runOutputs(a, name: nil)
        case (.runOutput(let a, let n), .get): return try await runOutputs(a, name: n)
        case (.triggers(let a), .get): return try await listTriggers(a)
        case (.trigger(let a, let n), .get): return try await getTrigger(a, n)
        case (.trigger(let a, let n), .put): return try await putTrigger(r, a, n)
        case (.trigger(let a, let n), .delete): return try await deleteTrigger(r, a, n)
        case (.operationStatus(_, _, let id), .get): return try await operationStatus(r, id)
        default: throw ARMError.methodNotAllowed(r.method.rawValue)
        }
    }

    // MARK: Templates

    /// The template at `a`, or 404 in ARM's words.
    func resource(_ a: TemplateAddress) async throws -> TemplateResource {
        let found: Result<TemplateResource, CoreError>
        do { found = .success(try await core.template(a.resourceId)) } catch { found = .failure(error) }
        switch found {
        case .success(let t): return t
        case .failure(let e) where e.kind == .notFound:
            throw ARMError.resourceNotFound(ImageTemplateResourceDocument.resourceType + "/" + a.name, "resource group '\(a.resourceGroup)'")
        case .failure(let e): throw e
        }
    }

    func document(_ a: TemplateAddress) async throws -> ImageTemplateResourceDocument {
        let t = try await resource(a)
        return ImageTemplateResourceDocument(t, lastRun: try await core.latestRun(templateId: t.record.id), audience: .api)
    }

    func listTemplates(_ r: APIRequest, subscription: String, resourceGroup: String?) async throws -> APIResponse {
        let all = try await core.templates(subscription: subscription, resourceGroup: resourceGroup).filter { r.caller.covers($0.record.id) }
        let start = max(0, r.skipToken.flatMap(Int.init) ?? 0)
        let page = Array(all.dropFirst(start).prefix(pageSize))
        var docs: [ImageTemplateResourceDocument] = []
        for t in page { docs.append(ImageTemplateResourceDocument(t, lastRun: try await core.latestRun(templateId: t.record.id), audience: .api)) }
        let next = start + page.count < all.count ? nextLink(r, skip: start + page.count) : nil
        return .json(.ok, PageDocument(value: docs, nextLink: next))
    }

    func nextLink(_ r: APIRequest, skip: Int) -> String {
        "\(r.baseURL)\(r.route.scopeId)/providers/\(ARMRoute.provider)/imageTemplates?api-version=\(r.apiVersion)&$skipToken=\(skip)"
            .replacingOccurrences(of: "/providers/\(ARMRoute.provider)/providers/", with: "/providers/")
    }

    /// A template's body as this request would create it: the URL names it and gives its scope.
    func load(_ r: APIRequest, _ a: TemplateAddress, text: String) throws -> LoadedTemplate {
        let scope = DeploymentScope(subscriptionId: a.subscription, resourceGroup: a.resourceGroup, location: "local")
        let file = TemplateLoader.loadRequestBody(
            text, name: a.name, apiVersion: r.apiVersion, options: LoadOptions(scope: scope, artifactPolicy: artifactPolicy), path: a.resourceId)
        guard file.isValid, let loaded = file.templates.first else {
            if let syntax = file.errors.first, syntax.code == .invalidRequestContent, syntax.path == .root, syntax.message.hasPrefix("cannot parse") {
                throw ARMError.notJSON("\(syntax.message) (line \(syntax.line), column \(syntax.column))")
            }
            throw ARMError.validationFailed(file.diagnostics)
        }
        return loaded
    }

    /// PUT: create; the same content again → 200 and nothing else happens; only patchable properties changed →
    /// applied as a PATCH; anything else changed → 409 as AIB answers, unless the body carries `kiln.replace`.
    func put(_ r: APIRequest, _ a: TemplateAddress) async throws -> APIResponse {
        var loaded = try load(r, a, text: r.text)
        let replace = loaded.template.tags.first { $0.key.caseInsensitiveCompare(Self.replaceTag) == .orderedSame }
        if let replace { loaded.template.tags[replace.key] = nil }
        if let existing = try? await core.template(a.resourceId) {
            var fixedPart = loaded.template
            fixedPart.tags = existing.template.tags
            fixedPart.identity = existing.template.identity
            fixedPart.properties.distribute = existing.template.properties.distribute
            fixedPart.properties.vmProfile = existing.template.properties.vmProfile
            if existing.template == loaded.template {
                return .json(.ok, try await document(a))
            }
            try refuseIfManaged(existing, action: "changed")
            if fixedPart == existing.template {
                _ = try await core.patch(existing.record.id, to: loaded.template, by: r.actor)
                return .json(.ok, try await document(a))
            } else if replace?.value.lowercased() != "true" {
                let changed = KilnCore.changedProperties(existing.template, loaded.template)
                throw ARMError(
                    .conflict, "Conflict",
                    "\(KilnCore.conflictMessage). \(a.name) exists with different content (\(changed.joined(separator: ", ")) changed): delete it and create it again, or set the tag '\(Self.replaceTag)': 'true' to have Kiln replace it.",
                    target: changed.first)
            }
            try await core.delete(existing.record.id)
        }
        let created = try await core.create(loaded, origin: TemplateOrigin(file: nil, trustsLocalFiles: false, actor: r.actor))
        let op = OperationRecord(
            kind: .createTemplate, resourceId: created.record.id, subscription: a.subscription, location: created.template.location, status: .succeeded)
        try await core.startOperation(op)
        logger.info("api: template created", metadata: ["template": "\(created.record.id)", "by": "\(r.caller.name)"])
        return .json(
            .created, ImageTemplateResourceDocument(created, lastRun: nil, audience: .api),
            headers: [("Azure-AsyncOperation", statusURL(r, op)), ("Retry-After", Self.retryAfter)])
    }

    /// Templates a repository manages change only through it.
    func refuseIfManaged(_ t: TemplateResource, action: String) throws {
        guard let repo = t.record.managedBy else { return }
        throw ARMError(
            .conflict, "Conflict",
            "\(t.name) is managed by the git repository \(repo) (file \(t.record.sourceFile ?? "?")): it is \(action) by a commit there, not through the API.",
            target: t.record.id)
    }

    /// PATCH: `tags`, `identity`, `properties.distribute` and `properties.vmProfile` only, applied to the
    /// template as it is; the result is validated as a whole, under this request's api-version.
    func patch(_ r: APIRequest, _ a: TemplateAddress) async throws -> APIResponse {
        let existing = try await resource(a)
        try refuseIfManaged(existing, action: "changed")
        let merged = try TemplatePatch.apply(r.text, to: existing.template, strict: r.apiVersion.isStrict)
        let loaded = try load(r, a, text: merged)
        _ = try await core.patch(existing.record.id, to: loaded.template, by: r.actor)
        logger.info("api: template patched", metadata: ["template": "\(existing.record.id)", "by": "\(r.caller.name)"])
        return .json(.ok, try await document(a))
    }

    /// DELETE: 204 when there is nothing; else deleted now (refused during a run), answered 202 with a `Location`
    /// that reports it done.
    func delete(_ r: APIRequest, _ a: TemplateAddress) async throws -> APIResponse {
        guard let existing = try? await core.template(a.resourceId) else { return APIResponse(status: .noContent) }
        try refuseIfManaged(existing, action: "deleted")
        try await core.delete(existing.record.id)
        let op = OperationRecord(
            kind: .deleteTemplate, resourceId: existing.record.id, subscription: a.subscription, location: existing.template.location, status: .succeeded)
        try await core.startOperation(op)
        logger.info("api: template deleted", metadata: ["template": "\(existing.record.id)", "by": "\(r.caller.name)"])
        return APIResponse(status: .accepted, headers: [("Location", statusURL(r, op)), ("Retry-After", Self.retryAfter)])
    }

    /// The operation-status URL of `op`, absolute, with its own api-version (the SDK adds none).
    func statusURL(_ r: APIRequest, _ op: OperationRecord) -> String {
        "\(r.baseURL)/subscriptions/\(op.subscription)/providers/\(ARMRoute.provider)/locations/\(op.location)/operations/\(op.id)?api-version=\(r.apiVersion)"
    }
}

/// A list page: `{"value": [...], "nextLink": "…"}`.
struct PageDocument<Element: Encodable & Sendable>: Encodable, Sendable {
    var value: [Element]
    var nextLink: String?
}
