import Foundation
import Testing
import KilnTemplates
@testable import KilnStore

@Suite struct ImageStoreTests {
    static func image(_ version: String, sku: String = "12") -> CatalogImage {
        CatalogImage(
            publisher: "Debian", offer: "debian-12", sku: sku, version: ImageVersion(version)!, osType: .linux, hyperVGeneration: .v1,
            virtualSize: 4 << 30, fileSize: 350 << 20, sha256: String(repeating: "a", count: 64), path: "images/x.qcow2",
            createdAt: Date(timeIntervalSince1970: 1_800_000_000), provenance: Provenance(kind: .bootstrapped))
    }

    @Test func ordersVersionsNumerically() async throws {
        let db = try KilnDatabase()
        for v in ["1.9.0", "1.10.0", "1.2.3", "0.99.99"] { try await db.addImage(Self.image(v)) }
        let all = try await db.images(publisher: "debian", offer: "DEBIAN-12", sku: "12")
        #expect(all.map(\.version.description) == ["1.10.0", "1.9.0", "1.2.3", "0.99.99"])
    }

    @Test func duplicateIsAConflictAndRoundTripsFields() async throws {
        let db = try KilnDatabase()
        var img = Self.image("2026.1128.0")
        img.provenance.packages = ["openssh-server", "sudo"]
        try await db.addImage(img)
        await #expect(throws: StoreError.self) { try await db.addImage(img) }
        let back = try await db.image(publisher: "Debian", offer: "debian-12", sku: "12", version: ImageVersion("2026.1128.0")!)
        #expect(back == img)
        try await db.removeImage(publisher: "Debian", offer: "debian-12", sku: "12", version: img.version)
        #expect(try await db.images().isEmpty)
    }

    @Test func persistsOnDiskInWALMode() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("kiln.db").path
        do {
            let db = try KilnDatabase(path: path)
            try await db.addImage(Self.image("1.0.0"))
        }
        let reopened = try KilnDatabase(path: path)
        #expect(try await reopened.images().count == 1)
        #expect(FileManager.default.fileExists(atPath: path + "-wal") || FileManager.default.fileExists(atPath: path))
    }

    @Test func galleryVersionsNeedADefinitionAndNeverOverwrite() async throws {
        let db = try KilnDatabase()
        let defId = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/d"
        let v = GalleryVersionRecord(definitionId: defId, version: ImageVersion(1, 0, 0), path: "p", sha256: "x", virtualSize: 1, regions: ["westeurope": 1])
        await #expect(throws: StoreError.self) { try await db.addGalleryVersion(v) }
        let def = GalleryImageDefinition(
            id: defId, gallery: "g", name: "d", location: nil, osType: .linux, osState: .generalized, hyperVGeneration: .v2,
            publisher: "P", offer: "O", sku: "S", description: nil, endOfLifeDate: nil)
        try await db.putGalleryDefinition(GalleryDefinitionRecord(def))
        try await db.addGalleryVersion(v)
        await #expect(throws: StoreError.self) { try await db.addGalleryVersion(v) }
        var v2 = v
        v2.version = ImageVersion(1, 10, 0)
        try await db.addGalleryVersion(v2)
        let versions = try await db.galleryVersions(definitionId: defId.uppercased())
        #expect(versions.map(\.version.description) == ["1.10.0", "1.0.0"])
        #expect(versions.first?.definitionId == defId)
    }
}
