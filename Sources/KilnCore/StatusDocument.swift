import Foundation
import KilnStore
import KilnTemplates

/// One template's build status as every front end shows it: the file `status/<resourceGroup>/<name>.json` on
/// the status branch, `kiln status --output json`, and the status part of `kiln template show --output json`.
/// Written and read through this one type, so the three cannot word a state differently.
///
/// Status files written before this type existed decode unchanged: the same keys, with `null` for a missing
/// source file or commit (decoded as nil) and phases keyed by AIB's sub-state names.
public struct TemplateStatusDocument: Codable, Sendable, Hashable {
    public var templateId: String?
    public var name: String?
    public var resourceGroup: String?
    /// Set only for a file that does not load and describes no recorded template (`status/_invalid/…`).
    public var file: String?
    public var sourceFile: String?
    public var sourceCommit: String?
    public var contentHash: String?
    public var provisioningState: ProvisioningState?
    public var provisioningError: ProvisioningErrorDocument?
    /// The diagnostics of the template's file when it currently fails to load (the last good template is kept).
    public var sourceError: [DiagnosticDocument]?
    public var runId: String?
    public var lastRunStatus: ImageTemplateStatus.LastRunStatus?
    public var runOutputs: [RunOutputStatusDocument]?
    /// Seconds per phase, to a tenth.
    public var phases: [RunSubState: Double]?
    /// The run's log directory.
    public var logs: String?
    /// The image the newest run was built from, exactly.
    public var source: SourceStatusDocument?
    /// The template and run of Kiln's that built that image (none for a catalog image): see `KilnCore.statusDocument`.
    public var parent: ParentStatusDocument?

    public init() {}

    /// The status of a recorded template and its newest run.
    public init(template t: TemplateRecord, lastRun run: RunRecord?, sourceErrors: [Diagnostic]? = nil) {
        templateId = t.id
        name = t.name
        resourceGroup = t.resourceGroup
        sourceFile = t.sourceFile
        sourceCommit = t.sourceCommit
        contentHash = t.contentHash
        provisioningState = t.provisioningState
        provisioningError = t.provisioningErrorCode.map { ProvisioningErrorDocument(provisioningErrorCode: $0, message: t.provisioningErrorMessage ?? "") }
        sourceError = sourceErrors.map { $0.map(DiagnosticDocument.init) }
        if let run {
            runId = run.id
            lastRunStatus = run.lastRunStatus
            runOutputs = run.outputs.map(RunOutputStatusDocument.init)
            phases = run.phaseSeconds.mapValues { ($0 * 10).rounded() / 10 }
            logs = run.logDirectory
            source = run.sourceReference.map { SourceStatusDocument(image: $0, version: run.sourceExactVersion, sha256: run.sourceSha256) }
        }
    }

    /// A file that does not load and describes no recorded template.
    public init(invalidFile file: String, diagnostics: [Diagnostic]) {
        self.file = file
        provisioningState = .failed
        sourceError = diagnostics.map(DiagnosticDocument.init)
    }

    /// The words for this status (see `TemplateStatusLabel`).
    public var label: TemplateStatusLabel {
        TemplateStatusLabel(
            provisioningState: provisioningState ?? .failed, runState: lastRunStatus?.runState,
            runSubState: lastRunStatus?.runSubState, sourceInvalid: sourceError != nil)
    }

    /// Pretty, sorted keys, a final newline: what the status branch stores.
    public func fileData() throws -> Data {
        var data = try KilnJSON.encoder(pretty: true).encode(self)
        data.append(0x0A)
        return data
    }

    public static func decode(_ data: Data) throws -> TemplateStatusDocument {
        try JSONDecoder().decode(TemplateStatusDocument.self, from: data)
    }

    enum CodingKeys: String, CodingKey {
        case templateId, name, resourceGroup, file, sourceFile, sourceCommit, contentHash, provisioningState, provisioningError,
            sourceError, runId, lastRunStatus, runOutputs, phases, logs, source, parent
    }

    /// Source file and commit are written as `null` when unknown, as they always were.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(templateId, forKey: .templateId)
        try c.encodeIfPresent(name, forKey: .name)
        try c.encodeIfPresent(resourceGroup, forKey: .resourceGroup)
        try c.encodeIfPresent(file, forKey: .file)
        if file == nil {
            try c.encode(sourceFile, forKey: .sourceFile)
            try c.encode(sourceCommit, forKey: .sourceCommit)
        }
        try c.encodeIfPresent(contentHash, forKey: .contentHash)
        try c.encodeIfPresent(provisioningState, forKey: .provisioningState)
        try c.encodeIfPresent(provisioningError, forKey: .provisioningError)
        try c.encodeIfPresent(sourceError, forKey: .sourceError)
        try c.encodeIfPresent(runId, forKey: .runId)
        try c.encodeIfPresent(lastRunStatus, forKey: .lastRunStatus)
        try c.encodeIfPresent(runOutputs, forKey: .runOutputs)
        try c.encodeIfPresent(phases, forKey: .phases)
        try c.encodeIfPresent(logs, forKey: .logs)
        try c.encodeIfPresent(source, forKey: .source)
        try c.encodeIfPresent(parent, forKey: .parent)
    }
}

/// What a run was built from: `…/images/debian-12-base/versions/1.0.1` (or a URN, a managed image id), its
/// version and the sha256 of its disk.
public struct SourceStatusDocument: Codable, Sendable, Hashable {
    public var image: String
    public var version: String?
    public var sha256: String?
}

/// Who built a template's source image: the template (resource id) and its run.
public struct ParentStatusDocument: Codable, Sendable, Hashable {
    public var template: String
    public var runId: String?
}

/// How a template's state is worded in status commit subjects, notes and `kiln status`: `Succeeded`,
/// `Running/Customizing`, `Failed to create`, `Accepted` (created, no run yet), with `, source invalid` when the
/// template's file currently fails to load.
public struct TemplateStatusLabel: Sendable, Hashable, CustomStringConvertible {
    public var provisioningState: ProvisioningState
    public var runState: RunState?
    public var runSubState: RunSubState?
    public var sourceInvalid: Bool

    public init(provisioningState: ProvisioningState, runState: RunState?, runSubState: RunSubState?, sourceInvalid: Bool) {
        self.provisioningState = provisioningState
        self.runState = runState
        self.runSubState = runSubState
        self.sourceInvalid = sourceInvalid
    }

    public var text: String {
        guard provisioningState == .succeeded else { return provisioningState == .failed ? "Failed to create" : provisioningState.rawValue }
        guard let runState else { return sourceInvalid ? "Source invalid" : "Accepted" }
        var base = runState.rawValue
        if runState == .running, let sub = runSubState { base += "/\(sub.rawValue)" }
        return sourceInvalid ? base + ", source invalid" : base
    }

    public var description: String { text }
}

public struct ProvisioningErrorDocument: Codable, Sendable, Hashable {
    public var provisioningErrorCode: String
    public var message: String
}

/// A diagnostic as JSON: where (file, line, JSON path) and what (AIB's code, a message).
public struct DiagnosticDocument: Codable, Sendable, Hashable {
    public var file: String
    public var line: Int
    public var path: String
    public var code: String
    public var message: String

    public init(_ d: Diagnostic) {
        file = d.file
        line = d.line
        path = d.path.description
        code = d.code.rawValue
        message = d.message
    }
}

/// A run output as the status file lists it.
public struct RunOutputStatusDocument: Codable, Sendable, Hashable {
    public var name: String
    public var provisioningState: ProvisioningState
    public var artifactId: String?
    public var artifactUri: String?
    public var message: String?

    public init(_ o: RunOutputRecord) {
        name = o.name
        provisioningState = o.provisioningState
        artifactId = o.artifactId
        artifactUri = o.artifactUri
        message = o.message
    }
}

/// The one JSON encoder configuration of Kiln's documents: sorted keys, unescaped slashes (resource ids).
public enum KilnJSON {
    public static func encoder(pretty: Bool = false) -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted] : [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
}
