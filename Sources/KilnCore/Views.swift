import Foundation
import KilnStore
import KilnTemplates

/// The ARM/AIB shapes of the core's resources, as Codable documents: what `kiln template show --output json`
/// prints and the REST API will return. Built from the records only here, so every front end agrees.

/// An imageTemplates resource with its read-only properties, as AIB's GET returns it, plus a `kiln` object
/// with what AIB keeps hidden (content hash, origin, staging path, the newest run, the status document).
public struct ImageTemplateResourceDocument: Encodable, Sendable {
    public static let resourceType = "Microsoft.VirtualMachineImages/imageTemplates"

    /// Who reads the document: the host's operator (CLI) sees where things are on the host; an API client does not.
    public enum Audience: Sendable { case host, api }

    public var id: String
    public var template: ImageTemplate
    public var status: ImageTemplateStatus
    public var systemData: SystemData
    public var kiln: KilnTemplateDetails
    public var audience: Audience

    /// - Parameters:
    ///   - status: the status document (`KilnCore.statusDocument`, with the parent looked up); without it, the
    ///     one the records give.
    ///   - outdated: `KilnCore.outdated`, when the caller asked.
    ///   - audience: `.api` leaves host paths (staging, logs, disks) out of the `kiln` object.
    public init(
        _ resource: TemplateResource, lastRun: RunRecord?, status statusDocument: TemplateStatusDocument? = nil, outdated: String? = nil,
        audience: Audience = .host
    ) {
        let r = resource.record
        id = r.id
        self.audience = audience
        systemData = SystemData(r)
        template = resource.template
        var s = ImageTemplateStatus()
        s.provisioningState = r.provisioningState
        s.provisioningError = r.provisioningErrorCode.map { .init(provisioningErrorCode: ErrorCode(rawValue: $0), message: r.provisioningErrorMessage ?? "") }
        s.exactStagingResourceGroup = r.stagingResourceGroup
        s.lastRunStatus = lastRun?.lastRunStatus
        s.sourceExactVersion = lastRun?.sourceExactVersion
        status = s
        kiln = KilnTemplateDetails(
            contentHash: r.contentHash, stagingDirectory: r.stagingDirectory, artifacts: r.artifacts,
            createdAt: r.createdAt.iso8601, sourceFile: r.sourceFile, sourceCommit: r.sourceCommit,
            lastRun: lastRun.map(RunDocument.init), status: statusDocument ?? TemplateStatusDocument(template: r, lastRun: lastRun),
            outdated: outdated)
    }

    enum CodingKeys: String, CodingKey { case id, type, name, location, tags, identity, properties, systemData, kiln }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(Self.resourceType, forKey: .type)
        try c.encode(template.name, forKey: .name)
        try c.encode(template.location, forKey: .location)
        try c.encode(template.tags, forKey: .tags)
        try c.encode(template.identity, forKey: .identity)
        try c.encode(PropertiesDocument(properties: template.properties, status: status), forKey: .properties)
        try c.encode(systemData, forKey: .systemData)
        switch audience {
        case .host: try c.encode(kiln, forKey: .kiln)
        case .api: try c.encode(KilnTemplateSummary(kiln), forKey: .kiln)
        }
    }

    /// `properties`: what the user wrote, then the read-only state in the same object; `source.exactVersion`
    /// inside `source`, where AIB reports it.
    struct PropertiesDocument: Encodable {
        var properties: ImageTemplateProperties
        var status: ImageTemplateStatus

        enum Keys: String, CodingKey { case source, provisioningState, provisioningError, lastRunStatus, exactStagingResourceGroup }

        func encode(to encoder: any Encoder) throws {
            try properties.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            if let v = status.sourceExactVersion { try c.encode(SourceDocument(source: properties.source, exactVersion: v), forKey: .source) }
            try c.encodeIfPresent(status.provisioningState, forKey: .provisioningState)
            try c.encodeIfPresent(status.provisioningError, forKey: .provisioningError)
            try c.encodeIfPresent(status.lastRunStatus, forKey: .lastRunStatus)
            try c.encodeIfPresent(status.exactStagingResourceGroup, forKey: .exactStagingResourceGroup)
        }
    }

    struct SourceDocument: Encodable {
        var source: ImageSource
        var exactVersion: String
        enum Keys: String, CodingKey { case exactVersion }
        func encode(to encoder: any Encoder) throws {
            try source.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(exactVersion, forKey: .exactVersion)
        }
    }
}

/// ARM's `systemData` of a resource.
public struct SystemData: Encodable, Sendable {
    public var createdBy: String?
    public var createdByType: String?
    public var createdAt: String
    public var lastModifiedBy: String?
    public var lastModifiedByType: String?
    public var lastModifiedAt: String

    public init(_ r: TemplateRecord) {
        createdBy = r.creator?.name
        createdByType = r.creator?.kind.rawValue
        createdAt = r.createdAt.iso8601
        lastModifiedBy = r.lastModifier?.name
        lastModifiedByType = r.lastModifier?.kind.rawValue
        lastModifiedAt = r.updatedAt.iso8601
    }
}

/// The part of `KilnTemplateDetails` an API client sees: no host paths (staging, logs, disks).
struct KilnTemplateSummary: Encodable {
    var contentHash: String
    /// The file inside its repository, for a template a repository manages.
    var sourceFile: String?
    var sourceCommit: String?
    var outdated: String?

    init(_ d: KilnTemplateDetails) {
        contentHash = d.contentHash
        sourceFile = d.sourceCommit == nil ? nil : d.sourceFile
        sourceCommit = d.sourceCommit
        outdated = d.outdated
    }
}

/// What Kiln adds to a template resource.
public struct KilnTemplateDetails: Encodable, Sendable {
    public var contentHash: String
    public var stagingDirectory: String
    public var artifacts: [StagedArtifact]
    public var createdAt: String
    public var sourceFile: String?
    public var sourceCommit: String?
    public var lastRun: RunDocument?
    /// The same document the status branch stores for this template.
    public var status: TemplateStatusDocument
    /// "outdated: source debian-12-base 1.0.1 is newer than the 1.0.0 this was built from", when it is.
    public var outdated: String?
}

/// Everything Kiln records about a run.
public struct RunDocument: Encodable, Sendable {
    public var runId: String
    public var templateId: String
    public var runState: RunState
    public var runSubState: RunSubState?
    public var message: String
    public var queuedAt: String
    public var startTime: String?
    public var endTime: String?
    public var phaseSeconds: [RunSubState: Double]
    public var logDirectory: String
    public var customizationLog: String
    public var timeoutMinutes: Int
    public var runOutputs: [RunOutputDocument]
    public var source: String?
    public var sourceExactVersion: String?
    public var sourceSha256: String?
    public var artifactPath: String?
    public var artifactSha256: String?
    public var artifactSize: Int64?
    public var ownerPid: Int32?
    public var cancelRequested: Bool?

    public init(_ r: RunRecord) {
        runId = r.id
        templateId = r.templateId
        runState = r.runState
        runSubState = r.runSubState
        message = r.message ?? ""
        queuedAt = r.queuedAt.iso8601
        startTime = r.startTime?.iso8601
        endTime = r.endTime?.iso8601
        phaseSeconds = r.phaseSeconds
        logDirectory = r.logDirectory
        customizationLog = (r.logDirectory as NSString).appendingPathComponent("customization.log")
        timeoutMinutes = r.timeoutMinutes
        runOutputs = r.outputs.map { RunOutputDocument($0) }
        source = r.sourceReference
        sourceExactVersion = r.sourceExactVersion
        sourceSha256 = r.sourceSha256
        artifactPath = r.artifactPath
        artifactSha256 = r.artifactSha256
        artifactSize = r.artifactSize
        ownerPid = r.owner?.pid
        cancelRequested = r.cancelRequested ? true : nil
    }
}

/// A runOutputs child resource's body.
public struct RunOutputDocument: Encodable, Sendable {
    public struct Properties: Encodable, Sendable {
        public var provisioningState: ProvisioningState
        public var artifactId: String?
        public var artifactUri: String?
    }
    public struct Details: Encodable, Sendable {
        public var message: String?
        public var seconds: Double?
    }
    public static let resourceType = "Microsoft.VirtualMachineImages/imageTemplates/runOutputs"

    /// `…/imageTemplates/T/runOutputs/NAME`, when the template is known.
    public var id: String?
    public var name: String
    public var type = Self.resourceType
    public var properties: Properties
    public var kiln: Details?

    public init(_ o: RunOutputRecord, templateId: String? = nil) {
        id = templateId.map { "\($0)/runOutputs/\(o.name)" }
        name = o.name
        properties = Properties(provisioningState: o.provisioningState, artifactId: o.artifactId, artifactUri: o.artifactUri)
        kiln = o.message == nil && o.seconds == nil ? nil : Details(message: o.message, seconds: o.seconds)
    }
}

/// ARM's list shape: `{"value": [...]}`.
public struct ListDocument<Element: Encodable & Sendable>: Encodable, Sendable {
    public var value: [Element]
    public init(value: [Element]) { self.value = value }
}

/// A triggers child resource as AIB's GET returns it (`properties.kind`, read-only `status` and
/// `provisioningState`), plus a `kiln` object with what it watches and what it last started.
public struct TriggerResourceDocument: Encodable, Sendable {
    public struct Status: Encodable, Sendable {
        public var code: TriggerStatusCode
        public var message: String
        public var time: String
    }
    public struct Properties: Encodable, Sendable {
        public var kind: TriggerKind
        public var status: Status
        public var provisioningState: ProvisioningState
    }
    public struct Details: Encodable, Sendable {
        /// The image the trigger last saw: a different one fires it.
        public var baseline: String?
        public var baselineSha256: String?
        public var lastRunId: String?
        public var sourceFile: String?
        public var sourceCommit: String?
    }

    public var id: String
    public var name: String
    public var type = TriggerResource.resourceType
    public var properties: Properties
    public var kiln: Details

    public init(_ t: TriggerRecord) {
        id = t.id
        name = t.name
        properties = Properties(
            kind: t.kind, status: Status(code: t.statusCode, message: t.statusMessage, time: t.statusTime.iso8601), provisioningState: .succeeded)
        kiln = Details(
            baseline: t.baselineReference, baselineSha256: t.baselineSha256, lastRunId: t.lastRunId, sourceFile: t.sourceFile, sourceCommit: t.sourceCommit)
    }
}
