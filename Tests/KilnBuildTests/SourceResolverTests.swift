import Foundation
import Testing
import KilnStore
import KilnTemplates
@testable import KilnBuild
import KilnSystem

/// Resolution of all three source types against a real (in-memory) SQLite catalog.
@Suite struct SourceResolverTests {
    static let paths = KilnPaths(dataDir: "/data")
    static let gallery = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g"

    static func catalogImage(_ publisher: String, _ offer: String, _ sku: String, _ version: String, gen: HyperVGeneration = .v1) -> CatalogImage {
        CatalogImage(
            publisher: publisher, offer: offer, sku: sku, version: ImageVersion(version)!, osType: .linux, hyperVGeneration: gen,
            virtualSize: 1 << 30, fileSize: 1 << 20, sha256: "sha-\(sku)-\(version)", path: "images/\(publisher)/\(offer)/\(sku)/\(version)/disk.qcow2",
            createdAt: Date(), provenance: Provenance(kind: .bootstrapped))
    }

    static func fixture() async throws -> (KilnDatabase, SourceResolver) {
        let db = try KilnDatabase()
        for (sku, v, gen) in [
            ("12", "2026.1120.0", HyperVGeneration.v1), ("12", "2026.1128.0", .v1), ("12", "2026.999.0", .v1), ("12-gen2", "2026.1128.1", .v2)
        ] {
            try await db.addImage(catalogImage("Debian", "debian-12", sku, v, gen: gen))
        }
        try await db.addImage(catalogImage("Canonical", "ubuntu", "24_04", "1.0.0"))
        try await db.putManagedImage(
            ManagedImageRecord(
                id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/base",
                location: "westeurope", osType: .linux, hyperVGeneration: .v2,
                path: "regions/westeurope/images/rg/base/disk.qcow2", sha256: "m", virtualSize: 2, createdAt: Date()))
        let def = GalleryImageDefinition(
            id: "\(gallery)/images/base", gallery: "g", name: "base", location: nil, osType: .linux, osState: .generalized,
            hyperVGeneration: .v2, publisher: "K", offer: "O", sku: "S", description: nil, endOfLifeDate: nil)
        try await db.putGalleryDefinition(GalleryDefinitionRecord(def))
        for (v, excluded) in [("1.0.0", false), ("1.2.0", false), ("1.10.0", true)] {
            try await db.addGalleryVersion(
                GalleryVersionRecord(
                    definitionId: def.id, version: ImageVersion(v)!, excludeFromLatest: excluded,
                    path: "regions/westeurope/galleries/g/images/base/versions/\(v)/disk.qcow2",
                    sha256: "g\(v)", virtualSize: 3, regions: ["westeurope": 1]))
        }
        return (db, SourceResolver(database: db, paths: paths))
    }

    static func pir(_ sku: String, _ version: String, offer: String = "debian-12", publisher: String = "Debian") -> ImageSource {
        .platformImage(PlatformImageSource(publisher: publisher, offer: offer, sku: sku, version: version))
    }

    @Test func platformLatestIsTheHighestVersionNumerically() async throws {
        let (_, r) = try await Self.fixture()
        let s = try await r.resolve(Self.pir("12", "latest"))
        // 2026.1128.0 > 2026.999.0 as numbers, although not as strings.
        #expect(s.exactVersion == "2026.1128.0")
        #expect(s.disk == "/data/images/Debian/debian-12/12/2026.1128.0/disk.qcow2")
        #expect(s.generation == .v1)
        #expect(s.reference == "Debian:debian-12:12:2026.1128.0")
    }

    @Test func platformExactVersionAndCaseInsensitiveNames() async throws {
        let (_, r) = try await Self.fixture()
        let s = try await r.resolve(Self.pir("12", "2026.1120.0", offer: "DEBIAN-12", publisher: "debian"))
        #expect(s.exactVersion == "2026.1120.0")
        let gen2 = try await r.resolve(Self.pir("12-gen2", "latest"))
        #expect(gen2.generation == .v2)
    }

    @Test func platformPlanInfoIsKept() async throws {
        let (_, r) = try await Self.fixture()
        let plan = PlanInfo(planName: "p", planProduct: "q", planPublisher: "r")
        let s = try await r.resolve(.platformImage(PlatformImageSource(publisher: "Debian", offer: "debian-12", sku: "12", version: "latest", planInfo: plan)))
        #expect(s.planInfo == plan)
    }

    @Test func platformNotFoundListsTheOffer() async throws {
        let (_, r) = try await Self.fixture()
        do {
            _ = try await r.resolve(Self.pir("13", "latest"))
            Issue.record("resolved a missing image")
        } catch {
            #expect(error.code == .badPIRSource)
            #expect(error.message.contains("no image Debian:debian-12:13:latest"))
            #expect(
                error.message.contains(
                    "For Debian:debian-12 the catalog holds: Debian:debian-12:12 (2026.1128.0, 2026.1120.0, 2026.999.0); Debian:debian-12:12-gen2 (2026.1128.1)"
                ))
        }
        do {
            _ = try await r.resolve(Self.pir("12", "1.2.3"))
            Issue.record("resolved a missing version")
        } catch {
            #expect(error.code == .badPIRSource)
            #expect(error.message.contains("Debian:debian-12:12 (2026.1128.0"))
        }
        do {
            _ = try await r.resolve(Self.pir("x", "latest", offer: "nope", publisher: "Nobody"))
            Issue.record("resolved a missing publisher")
        } catch {
            #expect(error.message.contains("The catalog holds: "))
            #expect(error.message.contains("Canonical:ubuntu:24_04 (1.0.0)"))
        }
    }

    @Test func managedImageFoundAndNotFound() async throws {
        let (_, r) = try await Self.fixture()
        let s = try await r.resolve(.managedImage(ManagedImageSource(imageId: "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Compute/images/base")))
        #expect(s.disk == "/data/regions/westeurope/images/rg/base/disk.qcow2")
        #expect(s.exactVersion == nil)
        do {
            _ = try await r.resolve(.managedImage(ManagedImageSource(imageId: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/other")))
            Issue.record("resolved a missing managed image")
        } catch {
            #expect(error.code == .badManagedImageSource)
            #expect(error.message.contains("managed images in resource group rg: /subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/base"))
        }
    }

    @Test func galleryLatestHonoursExcludeFromLatest() async throws {
        let (_, r) = try await Self.fixture()
        let latest = try await r.resolve(.sharedImageVersion(SharedImageVersionSource(imageVersionId: "\(Self.gallery)/images/base/versions/latest")))
        #expect(latest.exactVersion == "1.2.0", "1.10.0 is newer but excluded from latest")
        #expect(latest.generation == .v2)
        let explicit = try await r.resolve(.sharedImageVersion(SharedImageVersionSource(imageVersionId: "\(Self.gallery)/images/base/versions/1.10.0")))
        #expect(explicit.exactVersion == "1.10.0", "an excluded version can still be named explicitly")
        #expect(explicit.reference.hasSuffix("/images/base/versions/1.10.0"))
    }

    @Test func galleryNotFoundErrors() async throws {
        let (_, r) = try await Self.fixture()
        do {
            _ = try await r.resolve(.sharedImageVersion(SharedImageVersionSource(imageVersionId: "\(Self.gallery)/images/base/versions/2.0.0")))
            Issue.record("resolved a missing version")
        } catch {
            #expect(error.code == .badSharedImageVersionSource)
            #expect(error.message.contains("its versions: 1.10.0 (excluded from latest), 1.2.0, 1.0.0"))
        }
        do {
            _ = try await r.resolve(.sharedImageVersion(SharedImageVersionSource(imageVersionId: "\(Self.gallery)/images/nope/versions/latest")))
            Issue.record("resolved a missing definition")
        } catch {
            #expect(error.code == .badSharedImageVersionSource)
            #expect(error.message.contains("definitions in gallery g: base"))
        }
        do {
            _ = try await r.resolve(.sharedImageVersion(SharedImageVersionSource(imageVersionId: "/CommunityGalleries/x/Images/y/Versions/latest")))
            Issue.record("resolved a community gallery")
        } catch {
            #expect(error.code == .badSharedImageVersionSource)
        }
    }

    @Test func dateVersionsCountBuildsOfTheSameDay() {
        let date = ISO8601DateFormatter().date(from: "2026-11-28T10:00:00Z")!
        #expect(ImageService.dateVersion(date, taken: []) == ImageVersion(2026, 1128, 0))
        #expect(ImageService.dateVersion(date, taken: [ImageVersion(2026, 1128, 0), ImageVersion(2026, 1128, 1)]) == ImageVersion(2026, 1128, 2))
    }
}
