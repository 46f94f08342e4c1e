// SourceImage triggers: their rows, and the compare-and-set that fires one exactly once.
import Foundation
import GRDB
import KilnTemplates

/// AIB's `status.code` of a trigger: Healthy while it can watch its source; Unhealthy when the source does
/// not resolve (the message says why).
public enum TriggerStatusCode: String, Sendable, Hashable, Codable {
    case healthy = "Healthy", unhealthy = "Unhealthy"
}

/// A trigger of a template, what it watches, and what it last did. The baseline is the image the template's
/// source resolved to when the trigger was made or last fired: a different image fires it.
public struct TriggerRecord: Sendable, Hashable, Codable {
    public var idKey: String
    /// `…/imageTemplates/T/triggers/NAME`.
    public var id: String
    public var templateKey: String
    public var name: String
    public var kind: TriggerKind
    /// The GitOps source that owns it (as for templates), or nil when made by hand.
    public var managedBy: String?
    public var sourceFile: String?
    public var sourceCommit: String?
    public var statusCode: TriggerStatusCode
    public var statusMessage: String
    public var statusTime: Date
    public var baselineReference: String?
    public var baselineSha256: String?
    public var lastRunId: String?
    public var createdAt: Date

    public init(templateId: String, name: String, kind: TriggerKind, baseline: BuiltSource?, status: TriggerStatusCode, message: String, at now: Date = Date())
    {
        id = "\(templateId)/triggers/\(name)"
        idKey = id.lowercased()
        templateKey = templateId.lowercased()
        self.name = name
        self.kind = kind
        statusCode = status
        statusMessage = message
        statusTime = now
        baselineReference = baseline?.reference
        baselineSha256 = baseline?.sha256
        createdAt = now
    }

    public var baseline: BuiltSource? { baselineReference.map { BuiltSource(reference: $0, sha256: baselineSha256) } }
}

extension TriggerRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "imageTemplateTrigger"
}

extension KilnDatabase {
    static func createTriggerTable(_ db: Database) throws {
        try db.create(table: "imageTemplateTrigger") { t in
            t.column("idKey", .text).primaryKey()
            t.column("id", .text).notNull()
            // AIB deletes a template's triggers with it; one trigger per template.
            t.column("templateKey", .text).notNull().unique().references("imageTemplate", onDelete: .cascade)
            t.column("name", .text).notNull()
            t.column("kind", .text).notNull()
            t.column("managedBy", .text)
            t.column("sourceFile", .text)
            t.column("sourceCommit", .text)
            t.column("statusCode", .text).notNull()
            t.column("statusMessage", .text).notNull()
            t.column("statusTime", .datetime).notNull()
            t.column("baselineReference", .text)
            t.column("baselineSha256", .text)
            t.column("lastRunId", .text)
            t.column("createdAt", .datetime).notNull()
        }
    }

    /// Adds a trigger; refused when its template has one already (AIB allows one per template) or is gone.
    public func insertTrigger(_ trigger: TriggerRecord) async throws(StoreError) {
        try await write { db in
            guard try TemplateRecord.fetchOne(db, key: trigger.templateKey) != nil else { throw StoreError.notFound("image template \(trigger.templateKey)") }
            if let existing = try TriggerRecord.filter(Column("templateKey") == trigger.templateKey).fetchOne(db) {
                throw StoreError.conflict("trigger \(existing.id) (a template has at most one)")
            }
            try trigger.insert(db)
        }
    }

    public func trigger(id: String) async throws(StoreError) -> TriggerRecord? {
        try await read { db in try TriggerRecord.fetchOne(db, key: id.lowercased()) }
    }

    /// Every trigger, or those of one template.
    public func triggers(templateId: String?) async throws(StoreError) -> [TriggerRecord] {
        try await read { db in
            var q = TriggerRecord.all()
            if let templateId { q = q.filter(Column("templateKey") == templateId.lowercased()) }
            return try q.order(Column("idKey")).fetchAll(db)
        }
    }

    public func removeTrigger(id: String) async throws(StoreError) {
        try await write { db in
            guard try TriggerRecord.deleteOne(db, key: id.lowercased()) else { throw StoreError.notFound("trigger \(id)") }
        }
    }

    /// Sets a trigger's status (and, when given, its baseline) without firing it.
    public func updateTrigger(id: String, status: TriggerStatusCode, message: String, baseline: BuiltSource?? = nil) async throws(StoreError) {
        try await write { db in
            guard var t = try TriggerRecord.fetchOne(db, key: id.lowercased()) else { throw StoreError.notFound("trigger \(id)") }
            t.statusCode = status
            t.statusMessage = message
            t.statusTime = Date()
            if let baseline {
                t.baselineReference = baseline?.reference
                t.baselineSha256 = baseline?.sha256
            }
            try t.update(db)
        }
    }

    /// Fires a trigger once: in one write transaction, checks that its baseline is still `expected` (another
    /// process has not fired it for this image), queues `run` as `insertRun` does, and moves the baseline to
    /// `seen`. False, with nothing written, when someone else fired it first.
    public func fireTrigger(id: String, expected: BuiltSource?, seen: BuiltSource, run: RunRecord, message: String) async throws(StoreError) -> Bool {
        try await write { db in
            guard var t = try TriggerRecord.fetchOne(db, key: id.lowercased()) else { throw StoreError.notFound("trigger \(id)") }
            guard t.baselineReference == expected?.reference, t.baselineSha256 == expected?.sha256 else { return false }
            try Self.insertRun(db, run)
            t.baselineReference = seen.reference
            t.baselineSha256 = seen.sha256
            t.lastRunId = run.id
            t.statusCode = .healthy
            t.statusMessage = message
            t.statusTime = Date()
            try t.update(db)
            return true
        }
    }
}
