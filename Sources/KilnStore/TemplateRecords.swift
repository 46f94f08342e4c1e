import Foundation
import GRDB
import KilnTemplates

/// One customization artifact copied into a template's staging area at create.
public struct StagedArtifact: Sendable, Hashable, Codable {
    /// The `scriptUri` / `sourceUri` exactly as the template writes it.
    public var reference: String
    /// The staged copy, absolute.
    public var path: String
    public var sha256: String
    public var size: Int64

    public init(reference: String, path: String, sha256: String, size: Int64) {
        self.reference = reference
        self.path = path
        self.sha256 = sha256
        self.size = size
    }
}

/// Who created or last changed a resource, as ARM's `systemData` reports it (`createdBy`, `createdByType`).
public struct ResourceActor: Sendable, Hashable, Codable {
    /// ARM's `createdByType` values Kiln uses.
    public enum Kind: String, Sendable, Hashable, Codable {
        /// A person at the CLI (the operating-system user name).
        case user = "User"
        /// An API token (its configured name) or a GitOps repository.
        case application = "Application"
    }

    public var name: String
    public var kind: Kind

    public init(_ name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }
}

/// An image template resource as the core keeps it. The template itself is stored as JSON text that
/// KilnCore writes and reads back through the template decoder; the store does not interpret it.
public struct TemplateRecord: Sendable, Hashable, Codable {
    /// The resource id in lower case: resource ids compare ignoring case.
    public var idKey: String
    public var id: String
    public var subscription: String
    public var resourceGroup: String
    public var name: String
    public var location: String
    public var document: String
    public var contentHash: String
    /// Where the template came from: a file path, or a path inside a repository at `sourceCommit`.
    public var sourceFile: String?
    public var sourceCommit: String?
    /// The GitOps source that owns this template (a repository key), or nil for templates created by hand.
    /// The reconciler prunes only the templates its own repository manages.
    public var managedBy: String?
    public var provisioningState: ProvisioningState
    public var provisioningErrorCode: String?
    public var provisioningErrorMessage: String?
    public var stagingDirectory: String
    /// The staging resource group id reported as `exactStagingResourceGroup`.
    public var stagingResourceGroup: String
    public var artifacts: [StagedArtifact]
    public var createdAt: Date
    public var updatedAt: Date
    /// `systemData`: who created the template and who changed it last (nil for templates created before v10).
    public var createdBy: String?
    public var createdByType: ResourceActor.Kind?
    public var lastModifiedBy: String?
    public var lastModifiedByType: ResourceActor.Kind?

    public var creator: ResourceActor? { createdBy.map { ResourceActor($0, kind: createdByType ?? .user) } }
    public var lastModifier: ResourceActor? { lastModifiedBy.map { ResourceActor($0, kind: lastModifiedByType ?? .user) } }

    /// Records `actor` as the last to change the template (and as its creator when it has none yet).
    public mutating func modified(by actor: ResourceActor?) {
        guard let actor else { return }
        if createdBy == nil {
            createdBy = actor.name
            createdByType = actor.kind
        }
        lastModifiedBy = actor.name
        lastModifiedByType = actor.kind
    }

    public init(
        id: String, subscription: String, resourceGroup: String, name: String, location: String, document: String,
        contentHash: String, sourceFile: String?, sourceCommit: String?, provisioningState: ProvisioningState,
        stagingDirectory: String, stagingResourceGroup: String, createdAt: Date
    ) {
        self.idKey = id.lowercased()
        self.id = id
        self.subscription = subscription
        self.resourceGroup = resourceGroup
        self.name = name
        self.location = location
        self.document = document
        self.contentHash = contentHash
        self.sourceFile = sourceFile
        self.sourceCommit = sourceCommit
        self.managedBy = nil
        self.provisioningState = provisioningState
        self.stagingDirectory = stagingDirectory
        self.stagingResourceGroup = stagingResourceGroup
        self.artifacts = []
        self.createdAt = createdAt
        self.updatedAt = createdAt
    }
}

extension TemplateRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "imageTemplate"
}

/// One run output (a distribution target's result).
public struct RunOutputRecord: Sendable, Hashable, Codable {
    public var name: String
    public var artifactId: String?
    public var artifactUri: String?
    public var provisioningState: ProvisioningState
    public var message: String?
    /// How long this target took.
    public var seconds: Double?

    public init(name: String, artifactId: String?, artifactUri: String?, provisioningState: ProvisioningState, message: String? = nil, seconds: Double? = nil) {
        self.name = name
        self.artifactId = artifactId
        self.artifactUri = artifactUri
        self.provisioningState = provisioningState
        self.message = message
        self.seconds = seconds
    }
}

/// Which process executes a run: enough to tell, after a crash, that it is gone (a pid alone can be reused).
public struct RunOwner: Sendable, Hashable, Codable, CustomStringConvertible {
    public var pid: Int32
    /// Field 22 of `/proc/<pid>/stat`: the process start time in clock ticks since boot.
    public var startTicks: UInt64
    public var bootId: String

    public init(pid: Int32, startTicks: UInt64, bootId: String) {
        self.pid = pid
        self.startTicks = startTicks
        self.bootId = bootId
    }

    public var description: String { "process \(pid)" }
}

/// A run of a template; every run is kept until its template is deleted.
public struct RunRecord: Sendable, Hashable, Codable {
    public var id: String
    public var templateKey: String
    public var templateId: String
    /// AIB's runState / runSubState / message.
    public var runState: RunState
    public var runSubState: RunSubState?
    public var message: String?
    public var queuedAt: Date
    public var startTime: Date?
    public var endTime: Date?
    public var owner: RunOwner?
    public var cancelRequested: Bool
    public var timeoutMinutes: Int
    /// The run's private directory (overlay, VM, keys); removed when the run ends unless a VM was kept.
    public var workDirectory: String
    /// `packerlogs/<runId>/` in the staging area.
    public var logDirectory: String
    /// Wall-clock seconds spent in each phase (Queued included).
    public var phaseSeconds: [RunSubState: Double]
    /// What the run was built from (`ResolvedSource.reference`, `exactVersion` and `sha256`), once resolved.
    public var sourceReference: String?
    public var sourceExactVersion: String?
    public var sourceSha256: String?
    public var artifactPath: String?
    public var artifactSha256: String?
    public var artifactSize: Int64?
    public var outputs: [RunOutputRecord]
    /// What decided the image's content (`BuildInputs.key`), once the source was resolved.
    public var buildInputsKey: String?
    /// Set when the run distributed an image an earlier run with the same inputs captured, instead of building.
    public var reusedFromRunId: String?
    /// Build even when an image with the same inputs exists (`kiln template run --force`).
    public var force: Bool

    public init(id: String, templateId: String, queuedAt: Date, timeoutMinutes: Int, workDirectory: String, logDirectory: String) {
        self.id = id
        self.templateKey = templateId.lowercased()
        self.templateId = templateId
        self.runState = .running
        self.runSubState = .queued
        self.queuedAt = queuedAt
        self.cancelRequested = false
        self.timeoutMinutes = timeoutMinutes
        self.workDirectory = workDirectory
        self.logDirectory = logDirectory
        self.phaseSeconds = [:]
        self.outputs = []
        self.force = false
    }

    /// Running or Canceling: the run has not reached a final state.
    public var isActive: Bool { runState.isActive }
    /// Queued and not yet claimed by a process.
    public var isWaiting: Bool { runState == .running && runSubState == .queued && owner == nil }

    /// The source the run was built from, once it was resolved.
    public var builtFrom: BuiltSource? { sourceReference.map { BuiltSource(reference: $0, sha256: sourceSha256) } }
}

/// The exact image a run started from: what "outdated" compares with what the template's source resolves to
/// now. A managed image keeps its id when it is replaced, so the digest is part of it.
public struct BuiltSource: Sendable, Hashable, Codable {
    /// `Debian:debian-12:12-gen2:2026.1128.0`, `…/images/base/versions/1.0.1`, a managed image id.
    public var reference: String
    /// Nil for runs recorded before Kiln kept the digest.
    public var sha256: String?

    public init(reference: String, sha256: String?) {
        self.reference = reference
        self.sha256 = sha256
    }

    /// `debian-12-base 1.0.1` for a gallery image version, the reference itself otherwise.
    public var shown: String {
        guard let id = ResourceID.parse(reference), id.fullType == ResourceID.galleryImageVersion.fullType, id.segments.count >= 3 else {
            return reference
        }
        return "\(id.segments[1].name) \(id.name)"
    }

    /// The same image: the same reference (ignoring case, as Azure ids compare) and, where both are known,
    /// the same digest.
    public func isSameImage(as other: BuiltSource) -> Bool {
        guard reference.lowercased() == other.reference.lowercased() else { return false }
        guard let a = sha256, let b = other.sha256 else { return true }
        return a == b
    }
}

extension RunRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "templateRun"
}
