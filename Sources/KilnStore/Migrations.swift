import Foundation
import GRDB

/// The schema, as GRDB migrations: each is applied once, in order, and never edited after it shipped.
extension KilnDatabase {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1-images", migrate: createImageTables)
        m.registerMigration("v2-templates", migrate: createTemplateTables)
        m.registerMigration("v3-gitops") { db in
            try db.alter(table: "imageTemplate") { t in t.add(column: "managedBy", .text) }
            try db.create(index: "imageTemplate_managedBy", on: "imageTemplate", columns: ["managedBy"])
        }
        m.registerMigration("v4-managed-covering-index") { db in
            // The reconciler reads these columns of every managed template on each plan; template documents make
            // table rows large, so an index holding exactly these columns keeps that read off the table.
            try db.drop(index: "imageTemplate_managedBy")
            try db.create(
                index: "imageTemplate_managed", on: "imageTemplate",
                columns: ["managedBy", "idKey", "id", "name", "resourceGroup", "sourceFile", "sourceCommit", "contentHash", "provisioningState"])
        }
        m.registerMigration("v5-run-metrics") { db in
            // /metrics reads the runs that ended since its last scrape, and counts runs by state, on every scrape.
            try db.create(index: "templateRun_endTime", on: "templateRun", columns: ["endTime"])
            try db.create(index: "templateRun_state", on: "templateRun", columns: ["runState", "runSubState", "owner"])
        }
        m.registerMigration("v6-run-source-digest") { db in
            // What a run was built from, exactly: with the reference (a gallery version id, a URN with its
            // version, a managed image id, which is replaced in place) the sha256 of the disk it started from.
            try db.alter(table: "templateRun") { t in t.add(column: "sourceSha256", .text) }
        }
        m.registerMigration("v7-triggers", migrate: createTriggerTable)
        m.registerMigration("v8-run-images", migrate: createRunImageTable)
        m.registerMigration("v9-api-operations", migrate: createOperationTable)
        m.registerMigration("v10-template-system-data") { db in
            // ARM's systemData: who created a template (an API token's name, a repository, a CLI user) and who changed it last.
            try db.alter(table: "imageTemplate") { t in
                t.add(column: "createdBy", .text)
                t.add(column: "createdByType", .text)
                t.add(column: "lastModifiedBy", .text)
                t.add(column: "lastModifiedByType", .text)
            }
        }
        return m
    }

    /// The image catalog, managed images and the Compute Gallery.
    static func createImageTables(_ db: Database) throws {
        try db.create(table: "catalogImage") { t in
            // Azure compares publisher, offer and sku ignoring case.
            t.column("publisher", .text).notNull().collate(.nocase)
            t.column("offer", .text).notNull().collate(.nocase)
            t.column("sku", .text).notNull().collate(.nocase)
            t.column("version", .text).notNull()
            t.column("versionMajor", .integer).notNull()
            t.column("versionMinor", .integer).notNull()
            t.column("versionPatch", .integer).notNull()
            t.column("osType", .text).notNull()
            t.column("hyperVGeneration", .text).notNull()
            t.column("architecture", .text).notNull()
            t.column("format", .text).notNull()
            t.column("virtualSize", .integer).notNull()
            t.column("fileSize", .integer).notNull()
            t.column("sha256", .text).notNull()
            t.column("path", .text).notNull()
            t.column("createdAt", .datetime).notNull()
            t.column("provenance", .text).notNull()
            t.primaryKey(["publisher", "offer", "sku", "version"])
        }
        try db.create(table: "managedImage") { t in
            t.column("idKey", .text).primaryKey()
            t.column("id", .text).notNull()
            t.column("location", .text).notNull()
            t.column("osType", .text).notNull()
            t.column("hyperVGeneration", .text).notNull()
            t.column("path", .text).notNull()
            t.column("sha256", .text).notNull()
            t.column("virtualSize", .integer).notNull()
            t.column("createdAt", .datetime).notNull()
            t.column("metadata", .text).notNull()
        }
        try db.create(table: "galleryImageDefinition") { t in
            t.column("idKey", .text).primaryKey()
            t.column("id", .text).notNull()
            t.column("osType", .text).notNull()
            t.column("osState", .text).notNull()
            t.column("hyperVGeneration", .text).notNull()
            t.column("publisher", .text).notNull()
            t.column("offer", .text).notNull()
            t.column("sku", .text).notNull()
            t.column("description", .text)
            t.column("endOfLifeDate", .text)
            t.column("createdAt", .datetime).notNull()
        }
        try db.create(table: "galleryImageVersion") { t in
            t.column("definitionKey", .text).notNull().references("galleryImageDefinition", onDelete: .cascade)
            t.column("version", .text).notNull()
            t.column("versionMajor", .integer).notNull()
            t.column("versionMinor", .integer).notNull()
            t.column("versionPatch", .integer).notNull()
            t.column("excludeFromLatest", .boolean).notNull()
            t.column("path", .text).notNull()
            t.column("sha256", .text).notNull()
            t.column("virtualSize", .integer).notNull()
            t.column("regions", .text).notNull()
            t.column("createdAt", .datetime).notNull()
            t.column("metadata", .text).notNull()
            t.primaryKey(["definitionKey", "version"])
        }
    }

    /// Template resources and their runs.
    static func createTemplateTables(_ db: Database) throws {
        try db.create(table: "imageTemplate") { t in
            t.column("idKey", .text).primaryKey()
            t.column("id", .text).notNull()
            t.column("subscription", .text).notNull()
            t.column("resourceGroup", .text).notNull()
            t.column("name", .text).notNull()
            t.column("location", .text).notNull()
            t.column("document", .text).notNull()
            t.column("contentHash", .text).notNull()
            t.column("sourceFile", .text)
            t.column("sourceCommit", .text)
            t.column("provisioningState", .text).notNull()
            t.column("provisioningErrorCode", .text)
            t.column("provisioningErrorMessage", .text)
            t.column("stagingDirectory", .text).notNull()
            t.column("stagingResourceGroup", .text).notNull()
            t.column("artifacts", .text).notNull()
            t.column("createdAt", .datetime).notNull()
            t.column("updatedAt", .datetime).notNull()
        }
        try db.create(table: "templateRun") { t in
            t.column("id", .text).primaryKey()
            t.column("templateKey", .text).notNull().indexed().references("imageTemplate", onDelete: .cascade)
            t.column("templateId", .text).notNull()
            t.column("runState", .text).notNull()
            t.column("runSubState", .text)
            t.column("message", .text)
            t.column("queuedAt", .datetime).notNull()
            t.column("startTime", .datetime)
            t.column("endTime", .datetime)
            t.column("owner", .text)
            t.column("cancelRequested", .boolean).notNull()
            t.column("timeoutMinutes", .integer).notNull()
            t.column("workDirectory", .text).notNull()
            t.column("logDirectory", .text).notNull()
            t.column("phaseSeconds", .text).notNull()
            t.column("sourceReference", .text)
            t.column("sourceExactVersion", .text)
            t.column("artifactPath", .text)
            t.column("artifactSha256", .text)
            t.column("artifactSize", .integer)
            t.column("outputs", .text).notNull()
        }
    }
}
