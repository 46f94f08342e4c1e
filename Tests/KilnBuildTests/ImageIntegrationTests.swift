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

        let fromRaw = try await service.importImage(file: raw, publisher: "Test", offer: "roundtrip", sku: "raw", version: ImageVersion(1, 0, 0), osType: .linux, generation: .v1)
        let fromVHD = try await service.importImage(file: vhd, publisher: "Test", offer: "roundtrip", sku: "vhd", version: ImageVersion(1, 0, 0), osType: .linux, generation: .v1)
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
            _ = try await service.importImage(file: raw, publisher: "Test", offer: "roundtrip", sku: "raw", version: ImageVersion(1, 0, 0), osType: .linux, generation: .v1)
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

@Suite struct ProcessRunnerTests {
    @Test func capturesOutputAndStatus() async throws {
        let r = try await ProcessRunner.run("sh", ["-c", "echo out; echo err >&2; exit 3"])
        #expect(r.status == 3 && r.stdout == "out\n" && r.stderr == "err\n")
        await #expect(throws: CommandError.self) { try await ProcessRunner.check("sh", ["-c", "exit 1"]) }
    }

    @Test func timesOut() async throws {
        let start = ContinuousClock.now
        do {
            _ = try await ProcessRunner.run("sleep", ["120"], timeout: .seconds(1))
            Issue.record("did not time out")
        } catch {
            #expect(error.reason?.contains("timed out") == true)
        }
        // Far below the sleep; generous, as the suite runs beside VM builds on two cores (12 s seen in CI).
        #expect(ContinuousClock.now - start < .seconds(60))
    }

    /// Both streams well past a pipe's 64 KiB, written interleaved: nothing lost, nothing deadlocked, lines whole.
    @Test func largeOutputOnBothStreams() async throws {
        let lines = LineCounter()
        let r = try await ProcessRunner.run("sh", ["-c", "i=0; while [ $i -lt 20000 ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done"],
                                            onOutputLine: { lines.add($0) })
        #expect(r.status == 0)
        #expect(r.stdout.split(separator: "\n").count == 20000 && r.stdout.hasSuffix("out 19999\n"))
        #expect(r.stderr.split(separator: "\n").count == 20000 && r.stderr.hasPrefix("err 0\nerr 1\n"))
        #expect(lines.count == 40000)
    }

    /// Input, working directory and environment reach the child; a child that stops reading its input early
    /// costs nothing (EPIPE on the writer's side, no SIGPIPE for the process).
    @Test func inputDirectoryAndEnvironment() async throws {
        let echoed = try await ProcessRunner.check("cat", [], input: Data("piped in\n".utf8))
        #expect(echoed.stdout == "piped in\n")
        let big = Data(repeating: 0x61, count: 4 << 20)
        let head = try await ProcessRunner.check("head", ["-c", "5"], input: big)
        #expect(head.stdout == "aaaaa")
        let pwd = try await ProcessRunner.check("pwd", [], currentDirectory: "/tmp")
        #expect(pwd.stdout == "/tmp\n")
        let env = try await ProcessRunner.check("sh", ["-c", "echo $KILN_RUNNER_TEST"], environment: ["KILN_RUNNER_TEST": "from-kiln"])
        #expect(env.stdout == "from-kiln\n")
        let killed = try await ProcessRunner.run("sh", ["-c", "kill -TERM $$"])
        #expect(killed.status == 128 + SIGTERM)
    }

    /// The child starts with default signal handling and nothing blocked, whatever this process ignores
    /// (SIGPIPE, for libgit2) or blocks (Dispatch's threads block signals).
    @Test func childrenGetDefaultSignals() async throws {
        signal(SIGPIPE, SIG_IGN)
        let r = try await ProcessRunner.check("grep", ["-E", "^Sig(Ign|Blk):", "/proc/self/status"])
        let masks = Dictionary(uniqueKeysWithValues: r.stdout.split(separator: "\n").map { line -> (String, UInt64) in
            let f = line.split(separator: "\t")
            return (String(f[0]), UInt64(f[1], radix: 16) ?? .max)
        })
        let bit = { (sig: Int32) -> UInt64 in 1 << UInt64(sig - 1) }
        #expect(masks["SigIgn:"].map { $0 & (bit(SIGPIPE) | bit(SIGTERM) | bit(SIGINT)) } == 0, "\(r.stdout)")
        #expect(masks["SigBlk:"] == 0, "\(r.stdout)")
    }

    /// A command that leaves a process behind holding its output (a daemon) returns after the grace period
    /// with what it printed itself.
    @Test func aLeftBehindProcessDoesNotHoldTheCommand() async throws {
        let start = ContinuousClock.now
        let r = try await ProcessRunner.run("sh", ["-c", "sleep 60 & echo $!"])
        #expect(ContinuousClock.now - start < .seconds(30))
        let pid = try #require(pid_t(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), "\(r.stdout)")
        #expect(r.status == 0 && kill(pid, 0) == 0, "the left-behind sleep is still running")
        kill(pid, SIGKILL)
    }

    /// Many short commands in flight at once, as a controller with several builds runs them. With
    /// `readabilityHandler` this churn crashed the process in libdispatch (`_dispatch_event_loop_drain`, a
    /// SIGSEGV at 0x30): twice in three runs of 4,000 commands here, and once in CI. (300 here: the suite runs
    /// in parallel, and more spawns slowed other tests enough to fail them.)
    @Test func manyConcurrentCommands() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<300 {
                if i >= 8 { try await group.next() }
                group.addTask {
                    let r = try await ProcessRunner.run("sh", ["-c", "echo \(i); echo e\(i) >&2"])
                    #expect(r.stdout == "\(i)\n" && r.stderr == "e\(i)\n")
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func missingProgramSaysHowToInstall() async {
        do {
            _ = try await ProcessRunner.run("kiln-no-such-tool", [])
            Issue.record("ran a missing program")
        } catch {
            #expect(error.description.contains("not installed"))
        }
    }
}

final class LineCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add(_: String) { lock.withLock { n += 1 } }
    var count: Int { lock.withLock { n } }
}
