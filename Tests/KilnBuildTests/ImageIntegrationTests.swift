import Foundation
import Testing
import KilnStore
import KilnTemplates
@testable import KilnBuild
import KilnSystem

/// One bootstrapped Debian 12 per generation for the whole test process, built through the same service
/// `kiln images bootstrap` uses. The bootstrap cache lives in `KILN_CACHE_DIR` (CI points it at a
/// directory that survives between runs), so only the first run on a machine pays for debootstrap.
actor SharedImages {
    static let shared = SharedImages()

    let paths: KilnPaths
    let database: KilnDatabase
    /// In-flight or finished bootstraps: suites run in parallel, and an actor is re-entered at each await.
    private var tasks: [HyperVGeneration: Task<ImageService.BootstrapOutcome, any Error>] = [:]

    init() {
        // One data directory per run, emptied first: the disks in it are hard links into the cache.
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-build-tests").path
        try? FileManager.default.removeItem(atPath: data)
        let cache = ProcessInfo.processInfo.environment["KILN_CACHE_DIR"] ?? "/var/cache/kiln-test"
        paths = KilnPaths(dataDir: data, cacheDir: cache)
        database = try! KilnDatabase(path: paths.database)
    }

    var service: ImageService { ImageService(paths: paths, database: database) }

    func image(_ generation: HyperVGeneration) async throws -> ImageService.BootstrapOutcome {
        if let t = tasks[generation] { return try await t.value }
        let service = self.service
        let t = Task { try await service.bootstrapDebian12(generation: generation, version: nil, force: false) { print("bootstrap: \($0)") } }
        tasks[generation] = t
        return try await t.value
    }
}

@Suite(.serialized) struct ImageIntegrationTests {
    static func boot(_ disk: String, _ generation: HyperVGeneration, _ command: String) async throws -> BootCheck.Outcome {
        let paths = SharedImages.shared.paths
        return try await BootCheck(paths: paths).run(disk: disk, generation: generation, command: command)
    }

    @Test func bootstrappedGen1IsListedAndBootsWithAFreshKeyFromANoCloudSeed() async throws {
        let outcome = try await SharedImages.shared.image(.v1)
        let image = outcome.image
        #expect(image.publisher == "Debian" && image.offer == "debian-12" && image.sku == "12")
        #expect(image.hyperVGeneration == .v1 && image.osType == .linux && image.format == "qcow2")
        #expect(image.provenance.kind == .bootstrapped && image.provenance.packages?.contains("openssh-server") == true)
        let listed = try await SharedImages.shared.service.list()
        #expect(listed.contains(image))
        let paths = SharedImages.shared.paths
        let onDisk = try DiskTool.sha256(of: paths.absolute(image.path))
        #expect(onDisk == image.sha256)

        let r = try await Self.boot(paths.absolute(image.path), .v1, "uname -a; hostname; sudo -n id -u")
        #expect(r.status == 0, "\(r.output)")
        let lines = r.output.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("Linux ") == true, "\(r.output)")
        #expect(lines.count == 3 && lines[1].hasPrefix("check-"), "the hostname comes from the seed's meta-data: \(r.output)")
        #expect(lines.last == "0", "passwordless sudo for the build user")
        print("Gen1 boot-to-SSH: \(r.bootToSSH) (\(r.accelerator))")
    }

    @Test func gen2BootsThroughUEFI() async throws {
        let outcome = try await SharedImages.shared.image(.v2)
        #expect(outcome.image.sku == "12-gen2" && outcome.image.hyperVGeneration == .v2)
        let paths = SharedImages.shared.paths
        let r = try await Self.boot(paths.absolute(outcome.image.path), .v2, "uname -a; test -d /sys/firmware/efi && echo uefi")
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("Linux ") && r.output.contains("uefi"), "\(r.output)")
        print("Gen2 boot-to-SSH: \(r.bootToSSH) (\(r.accelerator))")
    }

    @Test func theSameInputsReuseTheCache() async throws {
        let first = try await SharedImages.shared.image(.v1)
        let start = ContinuousClock.now
        let again = try await SharedImages.shared.service.bootstrapDebian12(generation: .v1, version: nil, force: false) { _ in }
        #expect(again.reusedCache)
        #expect(again.alreadyInCatalog)
        #expect(again.image == first.image)
        #expect(ContinuousClock.now - start < .seconds(60), "reuse hashes the disk, it does not rebuild it")
    }

    @Test func importOfRawAndVHDRoundTrips() async throws {
        let base = try await SharedImages.shared.image(.v1).image
        let paths = SharedImages.shared.paths
        let service = await SharedImages.shared.service
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-import-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let raw = (dir as NSString).appendingPathComponent("debian.raw")
        let vhd = (dir as NSString).appendingPathComponent("debian.vhd")
        try await DiskTool.convert(paths.absolute(base.path), from: "qcow2", to: raw, format: "raw")
        try await DiskTool.convert(paths.absolute(base.path), from: "qcow2", to: vhd, format: "vpc", options: ["subformat=fixed", "force_size"])
        #expect(try await DiskTool.detectFormat(raw) == "raw")
        #expect(try await DiskTool.detectFormat(vhd) == "vpc", "a fixed VHD is recognised by its footer, not taken for raw")

        let fromRaw = try await service.importImage(
            file: raw, publisher: "Test", offer: "roundtrip", sku: "raw", version: ImageVersion(1, 0, 0), osType: .linux, generation: .v1)
        let fromVHD = try await service.importImage(
            file: vhd, publisher: "Test", offer: "roundtrip", sku: "vhd", version: ImageVersion(1, 0, 0), osType: .linux, generation: .v1)
        #expect(fromRaw.provenance.originalFormat == "raw")
        #expect(fromVHD.provenance.originalFormat == "vpc")
        #expect(fromVHD.format == "qcow2")
        #expect(try await DiskTool.sameContent(paths.absolute(base.path), "qcow2", paths.absolute(fromRaw.path), "qcow2"))
        #expect(try await DiskTool.sameContent(paths.absolute(base.path), "qcow2", paths.absolute(fromVHD.path), "qcow2"))
        // And the VHD import boots.
        let r = try await Self.boot(paths.absolute(fromVHD.path), .v1, "cat /etc/debian_version")
        #expect(r.status == 0 && r.output.hasPrefix("12."), "\(r.output)")

        // Importing the same key again is refused; deleting removes the disk.
        await #expect(throws: ImageService.ImageError.self) {
            _ = try await service.importImage(
                file: raw, publisher: "Test", offer: "roundtrip", sku: "raw", version: ImageVersion(1, 0, 0), osType: .linux, generation: .v1)
        }
        let deleted = try await service.delete(urn: "Test:roundtrip:raw:1.0.0")
        #expect(!FileManager.default.fileExists(atPath: paths.absolute(deleted.path)))
    }

    @Test func resolvesThePlatformSourceOfTheExamples() async throws {
        let image = try await SharedImages.shared.image(.v2).image
        let paths = SharedImages.shared.paths
        let db = SharedImages.shared.database
        let resolved = try await SourceResolver(database: db, paths: paths).resolve(
            .platformImage(PlatformImageSource(publisher: "Debian", offer: "debian-12", sku: "12-gen2", version: "latest")))
        #expect(resolved.exactVersion == image.version.description)
        #expect(FileManager.default.fileExists(atPath: resolved.disk))
    }
}

@Suite struct NoCloudSeedTests {
    @Test func writesACIDATAVolumeWithCloudConfig() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-seed-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = (dir as NSString).appendingPathComponent("seed.img")
        let seed = NoCloudSeed(instanceId: "run-1", hostname: "build-1", user: "kiln", authorizedKeys: ["ssh-ed25519 AAAA test"])
        try await seed.write(to: path)
        let label = try await ProcessRunner.check("blkid", ["-s", "LABEL", "-o", "value", path]).stdout
        #expect(label.trimmingCharacters(in: .whitespacesAndNewlines) == "CIDATA")
        let userData = try await ProcessRunner.check("mtype", ["-i", path, "::user-data"]).stdout
        #expect(userData.hasPrefix("#cloud-config\nusers:\n  - name: kiln\n"))
        #expect(userData.contains("      - ssh-ed25519 AAAA test\n"))
        #expect(userData.contains("sudo: ALL=(ALL) NOPASSWD:ALL"))
        let meta = try await ProcessRunner.check("mtype", ["-i", path, "::meta-data"]).stdout
        #expect(meta == "instance-id: run-1\nlocal-hostname: build-1\n")
    }
}
