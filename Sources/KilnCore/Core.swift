import Foundation
import KilnBuild
import KilnDistribute
import KilnStore
import KilnSystem
import KilnTemplates
import Logging

/// A template as the core keeps it: the decoded template plus its record (state, staging, origin).
public struct TemplateResource: Sendable {
    public var record: TemplateRecord
    public var template: ImageTemplate
    public var resourceId: ResourceID

    public var name: String { record.name }
    public var provisioningState: ProvisioningState { record.provisioningState }
}

/// Where a template being created came from, which decides how its relative artifact paths resolve.
public struct TemplateOrigin: Sendable {
    /// A file path, or a path inside a repository.
    public var file: String?
    /// The commit the file was read at (GitOps).
    public var commit: String?
    /// Where relative `scriptUri` / `sourceUri` values are read.
    public var relativeArtifacts: RelativeArtifactSource?
    /// The GitOps repository that owns the template (see `TemplateRecord.managedBy`).
    public var managedBy: String?
    /// The template was written by the user running Kiln (the CLI's `--trust-local-files`): its `file://`
    /// references may name any file that user can read. Templates from git or the API never are.
    public var trustsLocalFiles: Bool
    /// The hash the caller compares to decide "changed", when it covers more than the template (GitOps: the
    /// referenced repository files too); else the template's own.
    public var contentHash: String?
    /// Who asks: `systemData.createdBy` (an API token's name, the repository, the CLI's user).
    public var actor: ResourceActor?

    public init(
        file: String? = nil, commit: String? = nil, relativeArtifacts: RelativeArtifactSource? = nil, managedBy: String? = nil,
        trustsLocalFiles: Bool = false, contentHash: String? = nil, actor: ResourceActor? = nil
    ) {
        self.contentHash = contentHash
        self.actor = actor
        self.file = file
        self.commit = commit
        self.relativeArtifacts = relativeArtifacts
        self.managedBy = managedBy
        self.trustsLocalFiles = trustsLocalFiles
    }
}

/// The orchestration core: template resources (immutable: create, get, list, delete, patch), their staging
/// areas, runs and their state machine. Builds are executed by `RunExecutor`s, driven by a `WorkerPool`.
///
/// Every process that uses the data directory (the CLI, a worker, the controller) makes its own `KilnCore`
/// over the shared SQLite database; the store's transactions keep them consistent.
public final class KilnCore: Sendable {
    public let paths: KilnPaths
    /// The store; only the core talks to it (see `Queries.swift` for what front ends read).
    let store: any ResourceStore
    public let identities: IdentityConfig
    public let regions: RegionMap
    /// What templates' artifact references may reach (the configuration's `artifacts` section).
    public let artifactPolicy: ArtifactPolicy
    /// Build VMs' network (the configuration's `build` section).
    public let buildNetwork: BuildNetworkPolicy
    /// How many run images and gallery versions are kept (the configuration's `retention`).
    public let retention: RetentionSettings
    public let logger: Logger

    public init(
        paths: KilnPaths, store: any ResourceStore, identities: IdentityConfig = IdentityConfig(), regions: RegionMap? = nil,
        artifactPolicy: ArtifactPolicy = .untrusted, buildNetwork: BuildNetworkPolicy = .automatic(),
        retention: RetentionSettings = RetentionSettings(), logger: Logger = Logger(label: "kiln.core")
    ) {
        self.buildNetwork = buildNetwork
        self.retention = retention
        self.paths = paths
        self.store = store
        self.identities = identities
        self.artifactPolicy = artifactPolicy
        self.regions = regions ?? RegionMap(defaultRoot: paths.regions)
        self.logger = logger
    }

    public var distribution: Distribution { Distribution(database: store, paths: paths, regions: regions, logger: logger) }

    /// `<data>/identities.yaml`, the default place for artifact credentials.
    public static func defaultIdentitiesPath(_ paths: KilnPaths) -> String {
        (paths.dataDir as NSString).appendingPathComponent("identities.yaml")
    }

    public static let conflictMessage = "Update/Upgrade of image templates is currently not supported"

    // MARK: Read

    /// The template with this resource id, or the only template with this name.
    public func template(_ idOrName: String) async throws(CoreError) -> TemplateResource {
        do {
            if idOrName.hasPrefix("/") {
                guard let r = try await store.template(id: idOrName) else { throw CoreError.notFound("image template \(idOrName) not found") }
                return try decode(r)
            }
            let matches = try await store.templates(named: idOrName)
            switch matches.count {
            case 0: throw CoreError.notFound("no image template named \(idOrName)", remedy: .listTemplates)
            case 1: return try decode(matches[0])
            default: throw CoreError.ambiguous(name: idOrName, ids: matches.map(\.id))
            }
        } catch let e as CoreError {
            throw e
        } catch let e as StoreError {
            throw CoreError.from(e)
        } catch {
            throw .io("\(error)")
        }
    }

    public func templates(subscription: String? = nil, resourceGroup: String? = nil) async throws(CoreError) -> [TemplateResource] {
        do {
            return try await store.templates(subscription: subscription, resourceGroup: resourceGroup).map { r throws(CoreError) in try decode(r) }
        } catch let e as StoreError {
            throw CoreError.from(e)
        } catch {
            throw error as? CoreError ?? .io("\(error)")
        }
    }

    /// Reads the stored template back through the same decoder that accepted it.
    func decode(_ r: TemplateRecord) throws(CoreError) -> TemplateResource {
        let scope = DeploymentScope(subscriptionId: r.subscription, resourceGroup: r.resourceGroup, location: r.location)
        let file = TemplateLoader.load(text: r.document, path: "kiln.db:\(r.id)", format: .json, options: LoadOptions(scope: scope))
        guard file.isValid, let t = file.templates.first else {
            throw .io("the stored template \(r.id) no longer decodes: \(file.errors.map(\.description).joined(separator: "; "))")
        }
        return TemplateResource(record: r, template: t.template, resourceId: t.resourceId)
    }

    /// The JSON text a template is stored as (a bare resource; defaults spelled out).
    static func document(_ t: ImageTemplate) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(t)) ?? Data(), as: UTF8.self)
    }

    // MARK: Create

    /// Creates a template (PUT): Creating → Succeeded, or Failed with a provisioningError. Artifacts are
    /// copied into a new staging area and their sha256Checksum verified here, so that a wrong checksum fails
    /// the create and never a build. An id that exists is a Conflict, as in AIB.
    @discardableResult
    public func create(_ loaded: LoadedTemplate, origin: TemplateOrigin = TemplateOrigin()) async throws(CoreError) -> TemplateResource {
        let id = loaded.resourceId
        let t = loaded.template
        let staging = StagingArea.plan(
            stagingRoot: paths.staging, subscription: id.subscription, resourceGroup: id.resourceGroup,
            name: t.name, stagingResourceGroup: t.properties.stagingResourceGroup)
        var record = TemplateRecord(
            id: id.description, subscription: id.subscription, resourceGroup: id.resourceGroup, name: t.name,
            location: t.location, document: Self.document(t), contentHash: origin.contentHash ?? loaded.contentHash,
            sourceFile: origin.file, sourceCommit: origin.commit, provisioningState: .creating,
            stagingDirectory: staging.directory, stagingResourceGroup: staging.resourceGroupId, createdAt: Date())
        record.managedBy = origin.managedBy
        record.modified(by: origin.actor ?? origin.managedBy.map { ResourceActor($0, kind: .application) })
        do {
            try await store.insertTemplate(record)
        } catch .conflict {
            throw .conflict("image template \(id.description) exists. \(Self.conflictMessage): delete it first, then create it again")
        } catch {
            throw .from(error)
        }
        logger.info("creating template", metadata: ["template": "\(record.id)"])
        var staged = await stage(t, into: staging, origin: origin)
        if case .success = staged, let problem = await checkDistribution(t, policy: policy(for: origin)) { staged = .failure(problem) }
        let outcome = staged
        do {
            record = try await store.updateTemplate(id: record.id) { r in
                switch outcome {
                case .success(let artifacts):
                    try r.apply(.staged)
                    r.artifacts = artifacts
                case .failure(let e):
                    try r.apply(.stagingFailed(code: e.code.rawValue, message: e.message))
                }
            }
        } catch {
            throw .from(error)
        }
        if case .failure(let e) = outcome {
            logger.notice("template provisioning failed", metadata: ["template": "\(record.id)", "code": "\(e.code)", "error": "\(e.message)"])
        }
        let resource = TemplateResource(record: record, template: t, resourceId: id)
        if record.provisioningState == .succeeded, t.properties.autoRun.state == .enabled {
            _ = try await queueRun(resource)
        }
        return resource
    }

    /// Distribution targets that cannot work, found now rather than after a build: a missing gallery image
    /// definition (or one for another OS or generation, when the source is already known), a region that is
    /// not allowed, a VHD uri that is not local.
    func checkDistribution(_ t: ImageTemplate, policy: ArtifactPolicy) async -> ProvisioningFailure? {
        for (i, d) in t.properties.distribute.enumerated() {
            guard case .vhd(let v) = d, let uri = v.uri, let path = ArtifactReference.vhdLocalPath(uri), let problem = policy.vhdProblem(path) else { continue }
            return ProvisioningFailure(code: .badDistributeType, message: "$.properties.distribute[\(i)].uri: \(problem)")
        }
        let source = try? await SourceResolver(database: store, paths: paths).resolve(t.properties.source)
        let problems = await distribution.preflight(t, source: source.map { ($0.osType, $0.generation) })
        guard let first = problems.first else { return nil }
        return ProvisioningFailure(code: first.code, message: problems.map { "\($0.path): \($0.message)" }.joined(separator: "\n"))
    }

    /// The artifact rules for a template from `origin`.
    func policy(for origin: TemplateOrigin) -> ArtifactPolicy {
        origin.trustsLocalFiles ? artifactPolicy.trustingLocalFiles : artifactPolicy
    }

    struct ProvisioningFailure: Error {
        var code: ErrorCode
        var message: String
    }

    /// Copies every artifact into the staging area, verifying checksums. Nothing is half-done on failure:
    /// the staging directory is kept (it holds what was fetched, for diagnosis) and removed with the template.
    func stage(_ t: ImageTemplate, into staging: StagingArea, origin: TemplateOrigin) async -> Result<[StagedArtifact], ProvisioningFailure> {
        let fm = FileManager.default
        if let s = t.properties.stagingResourceGroup, !s.isEmpty,
            let existing = try? fm.contentsOfDirectory(atPath: staging.directory), !existing.isEmpty
        {
            return .failure(
                ProvisioningFailure(
                    code: .badStagingResourceGroup,
                    message:
                        "$.properties.stagingResourceGroup: the staging resource group \(s) (\(staging.directory)) is not empty; AIB requires an empty or new one"
                ))
        }
        do {
            // Only Kiln's user may read what is staged: artifacts can be private scripts fetched with a token.
            try fm.createDirectory(atPath: staging.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: staging.directory)
            try fm.createDirectory(atPath: staging.artifacts, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            return .failure(ProvisioningFailure(code: .serverError, message: "cannot create the staging area \(staging.directory): \(error)"))
        }
        let identity = t.identity.userAssignedIdentities.first.flatMap { identities.identity(for: $0) }
        let fetcher = ArtifactFetcher(identity: identity, relative: origin.relativeArtifacts, policy: policy(for: origin))
        var staged: [String: StagedArtifact] = [:]
        for (n, ref) in TemplateArtifact.all(in: t).enumerated() {
            let data: Data
            if let done = staged[ref.reference] {
                guard let d = fm.contents(atPath: done.path) else {
                    return .failure(ProvisioningFailure(code: .serverError, message: "cannot read the staged \(done.path)"))
                }
                data = d
            } else {
                do {
                    data = try await fetcher.fetch(ref.reference)
                } catch {
                    return .failure(
                        ProvisioningFailure(code: ref.errorCode, message: "\(ref.path): cannot fetch \(ArtifactFetcher.shown(ref.reference)): \(error)"))
                }
            }
            let sum = ArtifactFetcher.sha256(data)
            if let expected = ref.sha256Checksum, expected.lowercased() != sum {
                return .failure(
                    ProvisioningFailure(
                        code: ref.errorCode,
                        message:
                            "\(ref.path): the sha256Checksum of \(ArtifactFetcher.shown(ref.reference)) does not match: the template says \(expected.lowercased()), the file has \(sum)"
                    ))
            }
            if staged[ref.reference] != nil { continue }
            let base = ((URL(string: ref.reference)?.lastPathComponent).flatMap { $0.isEmpty ? nil : $0 } ?? "artifact")
                .replacingOccurrences(of: "/", with: "_")
            let dest = (staging.artifacts as NSString).appendingPathComponent("\(n + 1)-\(base)")
            do {
                guard fm.createFile(atPath: dest, contents: data, attributes: [.posixPermissions: 0o600]) else { throw FetchError("cannot create the file") }
            } catch {
                return .failure(ProvisioningFailure(code: .serverError, message: "cannot write \(dest): \(error)"))
            }
            staged[ref.reference] = StagedArtifact(reference: ref.reference, path: dest, sha256: sum, size: Int64(data.count))
        }
        return .success(staged.values.sorted { $0.path < $1.path })
    }

    // MARK: Delete

    /// Deletes a template and its staging area; refused while a run is Running or Canceling. A build VM kept
    /// by `errorHandling: abort` is stopped. Its run images go too, unless it is deleted to be created again
    /// (`keepNewestImage`, a GitOps recreate or move): then its newest image stays, for the new template to
    /// reuse when its build inputs are the same.
    public func delete(_ idOrName: String, keepNewestImage: Bool = false) async throws(CoreError) {
        let resource = try await template(idOrName)
        do {
            try await store.beginDeleteTemplate(id: resource.record.id)
            for run in try await store.runs(templateId: resource.record.id) {
                Leftovers.stopVMs(in: run.workDirectory, runId: run.id)
                try? FileManager.default.removeItem(atPath: run.workDirectory)
            }
            try? FileManager.default.removeItem(atPath: resource.record.stagingDirectory)
            for image in try await store.runImages(templateKey: resource.record.id).dropFirst(keepNewestImage ? 1 : 0) {
                try? FileManager.default.removeItem(atPath: (image.path as NSString).deletingLastPathComponent)
                try await store.removeRunImage(runId: image.runId)
            }
            try await store.removeTemplate(id: resource.record.id)
        } catch {
            throw .from(error)
        }
        logger.info("deleted template", metadata: ["template": "\(resource.record.id)"])
    }

    // MARK: Patch

    /// AIB's PATCH: only `identity`, `tags`, `properties.distribute` and `properties.vmProfile` may change, and
    /// no distribute target may be removed. `updated` is the whole template with the changes applied.
    @discardableResult
    public func patch(_ idOrName: String, to updated: ImageTemplate, by actor: ResourceActor? = nil) async throws(CoreError) -> TemplateResource {
        let current = try await template(idOrName)
        var comparable = updated
        comparable.identity = current.template.identity
        comparable.tags = current.template.tags
        comparable.properties.distribute = current.template.properties.distribute
        comparable.properties.vmProfile = current.template.properties.vmProfile
        guard comparable == current.template else {
            let changed = Self.changedProperties(current.template, comparable)
            throw .invalidParameter(
                path: changed.first ?? "$.properties",
                message:
                    "only identity, tags, properties.distribute and properties.vmProfile can be patched; \(changed.joined(separator: ", ")) changed. \(Self.conflictMessage): delete and create the template instead"
            )
        }
        let before = Set(current.template.properties.distribute.map { $0.runOutputName.lowercased() })
        let after = Set(updated.properties.distribute.map { $0.runOutputName.lowercased() })
        let removed = before.subtracting(after)
        guard removed.isEmpty else {
            throw .invalidParameter(
                path: "$.properties.distribute",
                message: "removing a distribute target is not supported (\(removed.sorted().joined(separator: ", ")) would be removed)")
        }
        let hash = ContentHash.of(updated)
        let doc = Self.document(updated)
        do {
            let r = try await store.updateTemplate(id: current.record.id) { r in
                r.document = doc
                r.contentHash = hash
                r.modified(by: actor)
            }
            return TemplateResource(record: r, template: updated, resourceId: current.resourceId)
        } catch {
            throw .from(error)
        }
    }

    /// The JSON paths of the properties that differ, other than those a PATCH may change.
    public static func changedProperties(_ a: ImageTemplate, _ b: ImageTemplate) -> [String] {
        var out: [String] = []
        if a.location != b.location { out.append("$.location") }
        let pa = a.properties, pb = b.properties
        if pa.source != pb.source { out.append("$.properties.source") }
        if pa.customize != pb.customize { out.append("$.properties.customize") }
        if pa.validate != pb.validate { out.append("$.properties.validate") }
        if pa.optimize != pb.optimize { out.append("$.properties.optimize") }
        if pa.errorHandling != pb.errorHandling { out.append("$.properties.errorHandling") }
        if pa.buildTimeoutInMinutes != pb.buildTimeoutInMinutes { out.append("$.properties.buildTimeoutInMinutes") }
        if pa.stagingResourceGroup != pb.stagingResourceGroup { out.append("$.properties.stagingResourceGroup") }
        if pa.autoRun != pb.autoRun { out.append("$.properties.autoRun") }
        if pa.additionalDataDisks != pb.additionalDataDisks { out.append("$.properties.additionalDataDisks") }
        if pa.managedResourceTags != pb.managedResourceTags { out.append("$.properties.managedResourceTags") }
        return out.isEmpty ? ["$.properties"] : out
    }
}
