// The images runs captured, kept apart from templates so that a rerun with the same inputs reuses one.
import Foundation
import GRDB
import KilnTemplates

/// An image a successful run captured, with the build-inputs key that made it. No foreign key: it outlives
/// its template (a GitOps recreate deletes the template and its runs, and may reuse the image).
public struct RunImageRecord: Sendable, Hashable, Codable {
    public var runId: String
    public var templateKey: String
    public var templateName: String
    public var buildInputsKey: String
    /// The standalone qcow2, absolute.
    public var path: String
    public var sha256: String
    public var virtualSize: Int64
    public var sourceReference: String
    public var sourceSha256: String?
    public var createdAt: Date

    public init(
        runId: String, templateId: String, templateName: String, buildInputsKey: String, path: String, sha256: String, virtualSize: Int64,
        source: BuiltSource, createdAt: Date = Date()
    ) {
        self.runId = runId
        self.templateKey = templateId.lowercased()
        self.templateName = templateName
        self.buildInputsKey = buildInputsKey
        self.path = path
        self.sha256 = sha256
        self.virtualSize = virtualSize
        self.sourceReference = source.reference
        self.sourceSha256 = source.sha256
        self.createdAt = createdAt
    }
}

extension RunImageRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "runImage"
}

extension KilnDatabase {
    static func createRunImageTable(_ db: Database) throws {
        try db.create(table: "runImage") { t in
            t.column("runId", .text).primaryKey()
            t.column("templateKey", .text).notNull().indexed()
            t.column("templateName", .text).notNull()
            t.column("buildInputsKey", .text).notNull().indexed()
            t.column("path", .text).notNull()
            t.column("sha256", .text).notNull()
            t.column("virtualSize", .integer).notNull()
            t.column("sourceReference", .text).notNull()
            t.column("sourceSha256", .text)
            t.column("createdAt", .datetime).notNull()
        }
        try db.alter(table: "templateRun") { t in
            t.add(column: "buildInputsKey", .text)
            t.add(column: "reusedFromRunId", .text)
            t.add(column: "force", .boolean).notNull().defaults(to: false)
        }
    }

    public func addRunImage(_ image: RunImageRecord) async throws(StoreError) {
        try await write { db in try image.save(db) }
    }

    /// Images captured with `buildInputsKey`, newest first.
    public func runImages(buildInputsKey: String) async throws(StoreError) -> [RunImageRecord] {
        try await read { db in
            try RunImageRecord.filter(Column("buildInputsKey") == buildInputsKey).order(Column("createdAt").desc).fetchAll(db)
        }
    }

    /// Every run image, newest first.
    public func runImages() async throws(StoreError) -> [RunImageRecord] {
        try await read { db in try RunImageRecord.order(Column("createdAt").desc).fetchAll(db) }
    }

    /// A template's images (by lower-cased id), newest first.
    public func runImages(templateKey: String) async throws(StoreError) -> [RunImageRecord] {
        try await read { db in
            try RunImageRecord.filter(Column("templateKey") == templateKey.lowercased()).order(Column("createdAt").desc).fetchAll(db)
        }
    }

    public func removeRunImage(runId: String) async throws(StoreError) {
        try await write { db in _ = try RunImageRecord.deleteOne(db, key: runId) }
    }
}
