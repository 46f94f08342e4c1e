import Foundation
import GRDB
import KilnTemplates

/// Catalog images, managed images and gallery versions: everything a template's source can name.
extension KilnDatabase {
    // MARK: Catalog

    public func addImage(_ image: CatalogImage) async throws(StoreError) {
        try await write { db in
            if try Self.imageKey(image.publisher, image.offer, image.sku, image.version).fetchCount(db) > 0 {
                throw StoreError.conflict("image \(image.urn)")
            }
            try image.insert(db)
        }
    }

    /// Images, newest version first; nil filters match everything.
    public func images(publisher: String? = nil, offer: String? = nil, sku: String? = nil) async throws(StoreError) -> [CatalogImage] {
        try await read { db in
            var q = CatalogImage.all()
            if let publisher { q = q.filter(Column("publisher") == publisher) }
            if let offer { q = q.filter(Column("offer") == offer) }
            if let sku { q = q.filter(Column("sku") == sku) }
            return try q.order(
                Column("publisher"), Column("offer"), Column("sku"),
                Column("versionMajor").desc, Column("versionMinor").desc, Column("versionPatch").desc
            ).fetchAll(db)
        }
    }

    /// The row with this key (publisher, offer and sku compare ignoring case).
    static func imageKey(_ publisher: String, _ offer: String, _ sku: String, _ version: ImageVersion) -> QueryInterfaceRequest<CatalogImage> {
        CatalogImage.filter(
            Column("publisher") == publisher && Column("offer") == offer && Column("sku") == sku
                && Column("version") == version.description)
    }

    public func image(publisher: String, offer: String, sku: String, version: ImageVersion) async throws(StoreError) -> CatalogImage? {
        try await read { db in try Self.imageKey(publisher, offer, sku, version).fetchOne(db) }
    }

    @discardableResult
    public func removeImage(publisher: String, offer: String, sku: String, version: ImageVersion) async throws(StoreError) -> CatalogImage {
        try await write { db in
            let key = Self.imageKey(publisher, offer, sku, version)
            guard let row = try key.fetchOne(db) else { throw StoreError.notFound("image \(publisher):\(offer):\(sku):\(version)") }
            try key.deleteAll(db)
            return row
        }
    }

    // MARK: Managed images

    /// Stores a managed image, replacing one with the same id (distribution replaces; history is the caller's).
    public func putManagedImage(_ image: ManagedImageRecord) async throws(StoreError) {
        try await write { db in try image.save(db) }
    }

    public func managedImage(id: String) async throws(StoreError) -> ManagedImageRecord? {
        try await read { db in try ManagedImageRecord.filter(Column("idKey") == id.lowercased()).fetchOne(db) }
    }

    public func managedImages() async throws(StoreError) -> [ManagedImageRecord] {
        try await read { db in try ManagedImageRecord.order(Column("idKey")).fetchAll(db) }
    }

    // MARK: Gallery

    public func putGalleryDefinition(_ d: GalleryDefinitionRecord) async throws(StoreError) {
        try await write { db in try d.save(db) }
    }

    public func galleryDefinition(id: String) async throws(StoreError) -> GalleryDefinitionRecord? {
        try await read { db in try GalleryDefinitionRecord.filter(Column("idKey") == id.lowercased()).fetchOne(db) }
    }

    public func galleryDefinitions() async throws(StoreError) -> [GalleryDefinitionRecord] {
        try await read { db in try GalleryDefinitionRecord.order(Column("idKey")).fetchAll(db) }
    }

    /// Adds a version; one that exists is a conflict, never an overwrite.
    public func addGalleryVersion(_ v: GalleryVersionRecord) async throws(StoreError) {
        try await write { db in
            guard try GalleryDefinitionRecord.filter(Column("idKey") == v.definitionId.lowercased()).fetchCount(db) > 0 else {
                throw StoreError.notFound("gallery image definition \(v.definitionId)")
            }
            if try GalleryVersionRecord.filter(Column("definitionKey") == v.definitionId.lowercased() && Column("version") == v.version.description).fetchCount(
                db) > 0
            {
                throw StoreError.conflict("gallery image version \(v.id)")
            }
            try v.insert(db)
        }
    }

    /// Versions of a definition, newest first.
    public func galleryVersions(definitionId: String) async throws(StoreError) -> [GalleryVersionRecord] {
        try await read { db in
            let def = try GalleryDefinitionRecord.filter(Column("idKey") == definitionId.lowercased()).fetchOne(db)
            var versions = try GalleryVersionRecord.filter(Column("definitionKey") == definitionId.lowercased())
                .order(Column("versionMajor").desc, Column("versionMinor").desc, Column("versionPatch").desc).fetchAll(db)
            // Report the definition id as it was written.
            if let def { for i in versions.indices { versions[i].definitionId = def.id } }
            return versions
        }
    }
}

extension KilnDatabase {
    /// Rewrites a version's row (distribution finishing a reserved version).
    public func replaceGalleryVersion(_ v: GalleryVersionRecord) async throws(StoreError) {
        try await write { db in
            try GalleryVersionRecord.filter(Column("definitionKey") == v.definitionId.lowercased() && Column("version") == v.version.description).deleteAll(db)
            try v.insert(db)
        }
    }

    /// Removes one version; returns it.
    @discardableResult
    public func removeGalleryVersion(definitionId: String, version: ImageVersion) async throws(StoreError) -> GalleryVersionRecord {
        try await write { db in
            let q = GalleryVersionRecord.filter(Column("definitionKey") == definitionId.lowercased() && Column("version") == version.description)
            guard let row = try q.fetchOne(db) else { throw StoreError.notFound("gallery image version \(definitionId)/versions/\(version)") }
            try q.deleteAll(db)
            return row
        }
    }
}
