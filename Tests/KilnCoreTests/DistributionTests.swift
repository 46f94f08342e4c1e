import Foundation
import KilnBuild
@testable import KilnCore
@testable import KilnDistribute
import KilnStore
import KilnSystem
import KilnTemplates
import Testing

@Suite struct VersioningTests {
    let existing = [ImageVersion(1, 2, 0), ImageVersion(2, 1, 0), ImageVersion(1, 0, 5)]

    func choose(_ v: Versioning?, explicit: ImageVersion? = nil, existing: [ImageVersion]? = nil, source: String? = nil) throws -> ImageVersion {
        try GalleryVersioning.choose(explicit: explicit, versioning: v, existing: existing ?? self.existing, sourceVersion: source)
    }

    @Test func latestWithAndWithoutMajor() throws {
        #expect(try choose(Versioning(scheme: .latest, major: 1)) == ImageVersion(1, 2, 1))
        #expect(try choose(Versioning(scheme: .latest)) == ImageVersion(2, 1, 1))
        #expect(try choose(nil) == ImageVersion(2, 1, 1), "omitted versioning is Latest")
        #expect(try choose(Versioning(scheme: .latest, major: 3)) == ImageVersion(3, 0, 0))
        #expect(try choose(Versioning(scheme: .latest), existing: []) == ImageVersion(1, 0, 0))
    }

    @Test func sourceAndExplicit() throws {
        #expect(try choose(Versioning(scheme: .source), source: "2026.1128.0") == ImageVersion(2026, 1128, 0))
        #expect(throws: GalleryVersioning.VersioningError.self) { try choose(Versioning(scheme: .source), source: nil) }
        #expect(throws: GalleryVersioning.VersioningError.self) { try choose(Versioning(scheme: .source), source: "1.2.0") }
        #expect(try choose(nil, explicit: ImageVersion(5, 0, 0)) == ImageVersion(5, 0, 0))
        do {
            _ = try choose(nil, explicit: ImageVersion(1, 2, 0))
            Issue.record("an existing version was chosen")
        } catch {
            #expect("\(error)".contains("exists already; versions are never overwritten"))
        }
    }
}

/// Distribution of a real (small) qcow2 image to real directories, with qemu-img and the real store.
@Suite struct DistributionTests {
    static let mib: Int64 = 1 << 20
    let defV2 = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/gal/images/linux-v2"

    /// A qcow2 whose virtual size is not a whole MiB, with some data in it.
    func smallImage(_ s: Scratch) async throws -> CapturedImage {
        let raw = s.dir + "/small.raw"
        var data = Data(count: Int(10 * Self.mib + 1536))
        data.replaceSubrange(0..<16, with: Data("kiln-distribute!".utf8))
        try data.write(to: URL(fileURLWithPath: raw))
        let qcow = s.dir + "/small.qcow2"
        try await DiskTool.convert(raw, from: "raw", to: qcow, format: "qcow2")
        return CapturedImage(
            path: qcow, sha256: try DiskTool.sha256(of: qcow), virtualSize: 10 * Self.mib + 1536, osType: .linux, generation: .v2,
            sourceVersion: "2026.1128.0", sourceReference: "Debian:debian-12:12-gen2:2026.1128.0")
    }

    func definition(_ s: Scratch, id: String, generation: HyperVGeneration = .v2) async throws {
        let rid = try #require(ResourceID.parse(id))
        try await s.core.store.putGalleryDefinition(
            GalleryDefinitionRecord(
                GalleryImageDefinition(
                    id: id, gallery: rid.segments[0].name, name: rid.name, location: nil, osType: .linux, osState: .generalized,
                    hyperVGeneration: generation, publisher: "P", offer: "O", sku: rid.name, description: nil, endOfLifeDate: nil)))
    }

    func template(_ distribute: String) throws -> ImageTemplate {
        try load(templateJSON(distribute: distribute)).template
    }

    @Test func galleryManagedImageAndVHDInParallel() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let image = try await smallImage(s)
        try await definition(s, id: defV2)
        let vhdPath = s.dir + "/out/exported.vhd"
        let t = try template(
            """
            [{"type": "SharedImage", "runOutputName": "sig", "galleryImageId": "\(defV2)",
              "targetRegions": [{"name": "westeurope"}, {"name": "North Europe", "replicaCount": 3}, {"name": "eastus"}],
              "versioning": {"scheme": "Latest", "major": 1}, "artifactTags": {"channel": "stable"}},
             {"type": "ManagedImage", "runOutputName": "mi", "imageId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/golden", "location": "westeurope"},
             {"type": "VHD", "runOutputName": "vhd", "uri": "file://\(vhdPath)"}]
            """)
        let dist = s.core.distribution
        #expect(await dist.preflight(t, source: (.linux, .v2)).isEmpty)
        let lines = LinesBox()
        let outcomes = await dist.distribute(image, template: t, provenance: .init(templateId: "t", runId: "r1", stagingDirectory: s.dir + "/staging")) {
            lines.add($0)
        }
        #expect(outcomes.map(\.runOutputName) == ["sig", "mi", "vhd"])
        for o in outcomes { #expect(o.succeeded, "\(o.runOutputName): \(o.error ?? "")") }
        #expect(outcomes[0].artifactId == "\(defV2)/versions/1.0.0")
        #expect(lines.all.contains { $0.contains("northeurope has its copy (3 replicas)") })

        // Every region has its own copy; replicas inside a region share the copy's blocks (hard links).
        let regions = s.core.paths.regions
        for r in ["westeurope", "northeurope", "eastus"] {
            let disk = "\(regions)/\(r)/galleries/gal/images/linux-v2/versions/1.0.0/disk.qcow2"
            #expect(try await DiskTool.sameContent(disk, "qcow2", image.path, "qcow2") == true, "\(r)")
            #expect(FileManager.default.fileExists(atPath: (disk as NSString).deletingLastPathComponent + "/metadata.json"))
        }
        let ne = "\(regions)/northeurope/galleries/gal/images/linux-v2/versions/1.0.0"
        #expect(DiskPlacement.inode(ne + "/replica-2.qcow2") == DiskPlacement.inode(ne + "/disk.qcow2"))
        #expect(DiskPlacement.inode(ne + "/replica-3.qcow2") == DiskPlacement.inode(ne + "/disk.qcow2"))
        // Regions on one filesystem share the (read-only) image; a region on another disk would get a copy.
        let placement = try #require(try await s.core.store.galleryVersions(definitionId: defV2).first?.metadata["regions"])
        #expect(placement.contains("\"placement\":\"hardlink\""), "\(placement)")
        let attrs = try FileManager.default.attributesOfItem(atPath: ne + "/disk.qcow2")
        #expect((attrs[.posixPermissions] as? Int).map { $0 & 0o222 } == 0, "placed images are read-only")
        let version = try #require(try await s.core.store.galleryVersions(definitionId: defV2).first)
        #expect(version.regions == ["westeurope": 1, "northeurope": 3, "eastus": 1])
        #expect(version.metadata["tags"]?.contains("stable") == true)
        #expect(version.metadata["runId"] == "r1")

        // A fixed VHD with a whole-MiB virtual size.
        let info = try await DiskTool.info(vhdPath, format: "vpc")
        #expect(info.format == "vpc")
        #expect(info.virtualSize % Self.mib == 0 && info.virtualSize >= image.virtualSize && info.virtualSize - image.virtualSize < Self.mib)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: vhdPath)[.size] as? Int64)
        #expect(size == info.virtualSize + 512, "a fixed VHD is the disk plus a 512-byte footer")
        let footer = try #require(FileHandle(forReadingAtPath: vhdPath))
        try footer.seek(toOffset: UInt64(size - 512))
        let f = try #require(try footer.read(upToCount: 512))
        #expect(f.prefix(8) == Data("conectix".utf8))
        #expect(f[f.startIndex + 60..<f.startIndex + 64] == Data([0, 0, 0, 2]), "disk type 2 = fixed")
        // Same content (qemu-img compare treats the extra tail of the larger image as zeros).
        #expect(try await DiskTool.sameContent(vhdPath, "vpc", image.path, "qcow2") == true)

        // The managed image is a usable source.
        let mi = try await SourceResolver(database: s.core.store, paths: s.core.paths).resolve(
            .managedImage(ManagedImageSource(imageId: "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/golden")))
        #expect(mi.disk.hasPrefix("\(regions)/westeurope/images/g/golden/"))

        // Again: Latest within major 1 gives 1.0.1; the managed image is replaced and remembers the first.
        let again = await dist.distribute(image, template: t, provenance: .init(templateId: "t", runId: "r2", stagingDirectory: s.dir + "/staging")) { _ in }
        #expect(again[0].artifactId == "\(defV2)/versions/1.0.1")
        let replaced = try #require(try await s.core.store.managedImage(id: "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/golden"))
        #expect(replaced.metadata["runId"] == "r2")
        #expect(replaced.metadata["history"]?.contains("\"runId\":\"r1\"") == true)
    }

    /// Regions on another filesystem (/dev/shm here) get one real copy, shared by links among themselves.
    @Test func regionsOnAnotherFilesystemShareOneCopy() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let shm = "/dev/shm/kiln-test-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: shm) }
        let image = try await smallImage(s)
        try await definition(s, id: defV2)
        let regions = RegionMap(defaultRoot: s.core.paths.regions, overrides: ["far1": shm + "/far1", "far2": shm + "/far2"])
        let dist = Distribution(database: s.core.store, paths: s.core.paths, regions: regions)
        let t = try template(
            #"[{"type": "SharedImage", "runOutputName": "sig", "galleryImageId": "\#(defV2)", "targetRegions": [{"name": "westeurope"}, {"name": "far1"}, {"name": "far2"}]}]"#
        )
        let out = await dist.distribute(image, template: t, provenance: .init(templateId: "t", runId: "r", stagingDirectory: s.dir + "/staging")) { _ in }
        #expect(out[0].succeeded, "\(out[0].error ?? "")")
        let v = "galleries/gal/images/linux-v2/versions/1.0.0/disk.qcow2"
        let near = DiskPlacement.inode("\(s.core.paths.regions)/westeurope/\(v)")
        let far1 = DiskPlacement.inode("\(shm)/far1/\(v)"), far2 = DiskPlacement.inode("\(shm)/far2/\(v)")
        #expect(near == DiskPlacement.inode(image.path))
        #expect(far1 != nil && far1 == far2)
        #expect(try await DiskTool.sameContent("\(shm)/far2/\(v)", "qcow2", image.path, "qcow2") == true)
    }

    @Test func excludeFromLatestShallowAndTheExistingVersionError() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let image = try await smallImage(s)
        try await definition(s, id: defV2)
        let dist = s.core.distribution
        let prov = Distribution.Provenance(templateId: "t", runId: "r", stagingDirectory: s.dir + "/staging")
        _ = await dist.distribute(
            image,
            template: try template(
                #"[{"type": "SharedImage", "runOutputName": "a", "galleryImageId": "\#(defV2)/versions/1.0.0", "targetRegions": [{"name": "westeurope"}]}]"#),
            provenance: prov
        ) { _ in }
        let excluded = await dist.distribute(
            image,
            template: try template(
                #"[{"type": "SharedImage", "runOutputName": "b", "galleryImageId": "\#(defV2)/versions/2.0.0", "excludeFromLatest": true, "targetRegions": [{"name": "westeurope"}, {"name": "eastus"}], "replicationMode": "Shallow"}]"#
            ), provenance: prov
        ) { _ in }
        #expect(excluded[0].succeeded, "\(excluded[0].error ?? "")")
        // Shallow: one copy, in the first region; the second region only references it.
        #expect(FileManager.default.fileExists(atPath: "\(s.core.paths.regions)/westeurope/galleries/gal/images/linux-v2/versions/2.0.0/disk.qcow2"))
        #expect(!FileManager.default.fileExists(atPath: "\(s.core.paths.regions)/eastus/galleries/gal/images/linux-v2/versions/2.0.0"))
        // `latest` skips a version excluded from it.
        let latest = try await SourceResolver(database: s.core.store, paths: s.core.paths)
            .resolve(.sharedImageVersion(SharedImageVersionSource(imageVersionId: "\(defV2)/versions/latest")))
        #expect(latest.exactVersion == "1.0.0")
        // An explicit version that exists is an error, and nothing is overwritten.
        let dup = await dist.distribute(
            image,
            template: try template(
                #"[{"type": "SharedImage", "runOutputName": "c", "galleryImageId": "\#(defV2)/versions/1.0.0", "targetRegions": [{"name": "westeurope"}]}]"#),
            provenance: prov
        ) { _ in }
        #expect(dup[0].error?.contains("exists already") == true)
        #expect(try await s.core.store.galleryVersions(definitionId: defV2).count == 2)
    }

    @Test func oneFailingTargetOfThreeLeavesTheOthers() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let image = try await smallImage(s)
        try await definition(s, id: defV2)
        let t = try template(
            """
            [{"type": "SharedImage", "runOutputName": "sig", "galleryImageId": "\(defV2)", "targetRegions": [{"name": "westeurope"}]},
             {"type": "VHD", "runOutputName": "broken", "uri": "/dev/null/cannot/be/a/dir.vhd"},
             {"type": "VHD", "runOutputName": "vhd"}]
            """)
        let outcomes = await s.core.distribution.distribute(
            image, template: t, provenance: .init(templateId: "t", runId: "r", stagingDirectory: s.dir + "/staging")
        ) { _ in }
        #expect(outcomes.map(\.succeeded) == [true, false, true])
        #expect(RunExecutor.finalState(outcomes.map(\.succeeded), validationFailed: false) == .partiallySucceeded)
        #expect(RunExecutor.finalState([false, false], validationFailed: false) == .failed)
        #expect(RunExecutor.finalState([true, true], validationFailed: false) == .succeeded)
        #expect(RunExecutor.finalState([true], validationFailed: true) == .failed)
    }

    @Test func problemsFoundAtCreate() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        try await definition(s, id: defV2)
        // A missing definition fails the create with BadSharedImageDistribute and the way to make it.
        let missing = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/gal/images/nope"
        let r = try await s.core.create(
            try load(
                templateJSON(
                    distribute:
                        #"[{"type": "SharedImage", "runOutputName": "sig", "galleryImageId": "\#(missing)", "targetRegions": [{"name": "westeurope"}]}]"#)))
        #expect(r.record.provisioningState == .failed)
        #expect(r.record.provisioningErrorCode == "BadSharedImageDistribute")
        #expect(r.record.provisioningErrorMessage?.contains("kiln gallery create-definition \(missing)") == true)
        #expect(r.record.provisioningErrorMessage?.contains("$.properties.distribute[0].galleryImageId") == true)
        // A definition for another generation, when the source is known; an https VHD; a disallowed region.
        let dist = Distribution(database: s.core.store, paths: s.core.paths, regions: RegionMap(defaultRoot: s.core.paths.regions, allowOnly: ["westeurope"]))
        let t = try template(
            """
            [{"type": "SharedImage", "runOutputName": "sig", "galleryImageId": "\(defV2)", "targetRegions": [{"name": "westeurope"}, {"name": "mars"}]},
             {"type": "VHD", "runOutputName": "vhd", "uri": "https://storage.example.com/c/x.vhd"}]
            """)
        let problems = await dist.preflight(t, source: (.linux, .v1))
        #expect(
            problems.map(\.path.description) == [
                "$.properties.distribute[0].targetRegions[1].name", "$.properties.distribute[0].galleryImageId", "$.properties.distribute[1].uri"
            ])
        #expect(problems[0].message.contains("allowed: westeurope"))
        #expect(problems[1].message.contains("hyperVGeneration V2"))
        #expect(problems[2].message.contains("only local VHD targets"))
        #expect(throws: RegionMap.RegionError.self) { try RegionMap(defaultRoot: "/x").directory(for: "../etc") }
    }
}

final class LinesBox: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func add(_ s: String) { lock.withLock { lines.append(s) } }
    var all: [String] { lock.withLock { lines } }
}

/// What each output records of its parent, and the chain `kiln images lineage` prints from it: real
/// distribution of a small qcow2 to a gallery (two definitions, one built on the other), a managed image and
/// a VHD, against the real store.
@Suite struct LineageTests {
    static let gallery = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/gal/images"
    static let urn = "Debian:debian-12:12-gen2:2026.1128.0"

    @Test func everyOutputRecordsItsParentAndTheChainGoesBackToTheCatalog() async throws {
        let s = try Scratch()
        defer { s.cleanup() }
        let d = DistributionTests()
        var image = try await d.smallImage(s)
        try await s.core.store.addImage(
            CatalogImage(
                publisher: "Debian", offer: "debian-12", sku: "12-gen2", version: ImageVersion("2026.1128.0")!, osType: .linux, hyperVGeneration: .v2,
                virtualSize: 1 << 30, fileSize: 1 << 20, sha256: "catalog-sha", path: "images/x/disk.qcow2", createdAt: Date(),
                provenance: Provenance(kind: .bootstrapped)))
        for name in ["base", "app"] { try await d.definition(s, id: "\(Self.gallery)/\(name)") }
        let dist = s.core.distribution
        let vhd = s.dir + "/out/base.vhd"
        image.sourceSha256 = "catalog-sha"
        let base = await dist.distribute(
            image,
            template: try d.template(
                """
                [{"type": "SharedImage", "runOutputName": "sig", "galleryImageId": "\(Self.gallery)/base", "targetRegions": [{"name": "westeurope"}]},
                 {"type": "VHD", "runOutputName": "vhd", "uri": "\(vhd)"}]
                """), provenance: .init(templateId: "/t/base", runId: "run-base", stagingDirectory: s.dir + "/staging")
        ) { _ in }
        #expect(base.allSatisfy { $0.succeeded }, "\(base.map(\.error))")
        let baseVersion = try #require(base[0].artifactId)
        let recorded = try #require(try await s.core.store.galleryVersions(definitionId: "\(Self.gallery)/base").first)
        #expect(recorded.metadata["sourceImage"] == Self.urn && recorded.metadata["sourceSha256"] == "catalog-sha")
        // The VHD's parent travels beside it.
        let sidecar = try JSONDecoder().decode([String: String].self, from: Data(contentsOf: URL(fileURLWithPath: vhd + ".kiln.json")))
        #expect(sidecar["sourceImage"] == Self.urn && sidecar["runId"] == "run-base" && sidecar["sha256"] == image.sha256)

        // app is built on base 1.0.0, and publishes a managed image too.
        image.sourceReference = baseVersion
        image.sourceSha256 = recorded.sha256
        let managed = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/app-golden"
        let app = await dist.distribute(
            image,
            template: try d.template(
                """
                [{"type": "SharedImage", "runOutputName": "sig", "galleryImageId": "\(Self.gallery)/app", "targetRegions": [{"name": "westeurope"}]},
                 {"type": "ManagedImage", "runOutputName": "mi", "imageId": "\(managed)", "location": "westeurope"}]
                """), provenance: .init(templateId: "/t/app", runId: "run-app", stagingDirectory: s.dir + "/staging")
        ) { _ in }
        #expect(app.allSatisfy { $0.succeeded }, "\(app.map(\.error))")

        let chain = try await s.core.lineage(of: "\(Self.gallery)/app/versions/latest")
        #expect(chain.text == "app 1.0.0 ← base 1.0.0 ← \(Self.urn)")
        #expect(chain.links.map(\.kind) == [.galleryImageVersion, .galleryImageVersion, .platformImage])
        #expect(chain.links.map(\.runId) == ["run-app", "run-base", nil])
        #expect(chain.links.last?.sha256 == "catalog-sha")
        #expect(try await s.core.lineage(of: managed).text == "app-golden ← base 1.0.0 ← \(Self.urn)")

        // The base version goes: the chain says so and ends there.
        _ = try await s.core.removeGalleryVersion(definitionId: "\(Self.gallery)/base", version: ImageVersion(1, 0, 0))
        #expect(try await s.core.lineage(of: "\(Self.gallery)/app/versions/1.0.0").text == "app 1.0.0 ← base 1.0.0 (deleted)")
        await #expect(throws: CoreError.self) { try await s.core.lineage(of: "no-such-template") }
    }

    @Test(arguments: [
        ("\(gallery)/base/versions/1.0.1", "\(gallery)/base/versions/1.0.0", "source base 1.0.1 is newer than the 1.0.0 this was built from"),
        ("\(gallery)/base/versions/1.0.0", "\(gallery)/base/versions/1.0.0", "source is now base 1.0.0; this was built from base 1.0.0"),
        ("Debian:debian-12:12:2026.1202.0", urn, "source is now Debian:debian-12:12:2026.1202.0; this was built from \(urn)")
    ])
    func outdatedIsWorded(_ now: String, _ built: String, _ expected: String) {
        #expect(KilnCore.newer(BuiltSource(reference: now, sha256: "a"), than: BuiltSource(reference: built, sha256: "b")) == expected)
    }
}
