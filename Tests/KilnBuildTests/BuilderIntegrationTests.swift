import Foundation
import Testing
import KilnStore
import KilnTemplates
@testable import KilnBuild
import KilnSystem

/// Real builds on the bootstrapped Debian image: customizers over SSH, deprovisioning, capture, in-VM
/// validation, then the captured image booted again to show the changes.
@Suite(.serialized) struct BuilderIntegrationTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("examples").path

    /// A template from text, with its artifacts staged from examples/.
    static func template(_ json: String) throws -> ImageTemplate {
        let f = TemplateLoader.load(text: json, path: "t.json")
        #expect(f.errors.isEmpty, "\(f.errors)")
        return try #require(f.templates.first).template
    }

    static func request(_ t: ImageTemplate, artifacts: [String: String] = [:]) async throws -> BuildRequest {
        let image = try await SharedImages.shared.image(.v1).image
        let paths = SharedImages.shared.paths
        let db = SharedImages.shared.database
        let source = try await SourceResolver(database: db, paths: paths).resolve(
            .platformImage(PlatformImageSource(publisher: "Debian", offer: "debian-12", sku: "12", version: "latest")))
        #expect(source.exactVersion == image.version.description)
        let runId = "run-\(UUID().uuidString.prefix(8).lowercased())"
        let base = (paths.dataDir as NSString).appendingPathComponent("builds/\(runId)")
        let (accel, _) = await AcceleratorProbe(cacheDir: paths.cacheDir).detect()
        return BuildRequest(
            runId: runId, template: t, source: source, artifacts: artifacts,
            workDirectory: base + "/work", logDirectory: base + "/logs", capturedDisk: base + "/captured.qcow2", accelerator: accel)
    }

    static let goodTemplate = """
        {
          "name": "e2e", "location": "westeurope", "identity": {"type": "None"},
          "properties": {
            "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
            "customize": [
              {"type": "Shell", "name": "inline", "inline": ["echo hello from inline", "sudo mkdir -p /etc/motd.d", "echo inline-ran | sudo tee /etc/kiln-inline"]},
              {"type": "Shell", "name": "harden", "scriptUri": "scripts/harden.sh", "sha256Checksum": "bdf2394ce792c61d32345df9b1689126e028081acb029d003301892dca27fccd"},
              {"type": "File", "name": "motd", "sourceUri": "files/motd", "destination": "/etc/motd.d/kiln", "sha256Checksum": "406e35a9c2d1ab05ae8d2ce16e4dc10e25b6be6a36e1ac4d06ec827b14bb89d4"},
              {"type": "WindowsRestart", "name": "reboot", "restartCommand": "sudo systemctl reboot", "restartCheckCommand": "test -f /etc/kiln-inline", "restartTimeout": "5m"}
            ],
            "validate": {"inVMValidations": [
              {"type": "Shell", "name": "check", "scriptUri": "scripts/validate-base.sh", "sha256Checksum": "d4322e00edb21b24dc7c286ed18c143e38d53f01434f5dc15b3bce5a70cf3af5"}
            ]},
            "distribute": [{"type": "VHD", "runOutputName": "vhd"}]
          }
        }
        """

    static var exampleArtifacts: [String: String] {
        [
            "scripts/harden.sh": repo + "/scripts/harden.sh", "files/motd": repo + "/files/motd",
            "scripts/validate-base.sh": repo + "/scripts/validate-base.sh"
        ]
    }

    @Test func buildsCustomizesCapturesAndValidates() async throws {
        let req = try await Self.request(try Self.template(Self.goodTemplate), artifacts: Self.exampleArtifacts)
        let phases = PhaseRecorder()
        let result = try await Builder(request: req, onPhase: { await phases.add($0) }).run()
        #expect(await phases.all == [.building, .customizing, .validating])
        #expect(FileManager.default.fileExists(atPath: result.capturedDisk))
        #expect(result.sha256 == (try DiskTool.sha256(of: result.capturedDisk)))
        #expect(result.validationFailure == nil)
        let log = try String(contentsOfFile: req.logDirectory + "/customization.log", encoding: .utf8)
        #expect(log.contains("==> [1/4] Shell 'inline': start"))
        #expect(log.contains("hello from inline"))
        #expect(log.contains("kiln: hardening"))
        #expect(log.contains("the VM restarted"))
        #expect(try String(contentsOfFile: req.logDirectory + "/validation.log", encoding: .utf8).contains("validation passed"))
        #expect(!FileManager.default.fileExists(atPath: req.workDirectory), "the overlay and VM files are removed")

        // Booting the captured image again shows the file and the scripts' effects, and the build user is gone.
        let paths = SharedImages.shared.paths
        let check = try await BootCheck(paths: paths).run(
            disk: result.capturedDisk, generation: .v1,
            command: "cat /etc/kiln-inline /etc/motd.d/kiln; test -f /etc/kiln/hardening && echo hardened; id packer 2>/dev/null || echo no-build-user")
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("inline-ran"))
        #expect(check.output.contains("built by Kiln"))
        #expect(check.output.contains("hardened"))
        #expect(check.output.contains("no-build-user"))
    }

    @Test func aFailingCustomizerReportsItsNameExitCodeAndLogTail() async throws {
        let t = try Self.template(
            """
            {"name": "fails", "location": "westeurope", "identity": {"type": "None"},
             "properties": {"source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
               "customize": [{"type": "Shell", "name": "ok", "inline": ["echo first"]},
                             {"type": "Shell", "name": "breaks", "inline": ["echo about to fail", "ls /nonexistent-kiln-path", "echo never printed"]}],
               "distribute": [{"type": "VHD", "runOutputName": "vhd"}]}}
            """)
        let req = try await Self.request(t)
        do {
            _ = try await Builder(request: req).run()
            Issue.record("the build succeeded")
        } catch {
            let message = error.description
            #expect(message.contains("customizer 2 (Shell 'breaks') failed with exit code 2"), "\(message)")
            #expect(message.contains("about to fail"), "\(message)")
            #expect(message.contains("No such file or directory"), "\(message)")
            #expect(!message.contains("never printed"))
        }
        // cleanup (the default) leaves no VM of this run.
        #expect(!(try await ProcessRunner.run("pgrep", ["-f", "kiln-\(req.runId)"])).stdout.contains(where: \.isNumber))
    }

    /// A guest that never comes up (here: paused right after QEMU starts, as a boot that stalls after GRUB looks from
    /// outside) is reset once after `resetAfter` and then boots; the reset is reported.
    @Test func aStalledBootIsResetOnceAndThenComesUp() async throws {
        let image = try await SharedImages.shared.image(.v1).image
        let paths = SharedImages.shared.paths
        let dir = (paths.vms as NSString).appendingPathComponent("stall-\(UUID().uuidString.prefix(8).lowercased())")
        try FileManager.default.ensureDirectory(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let overlay = dir + "/overlay.qcow2"
        try await DiskTool.createOverlay(base: paths.absolute(image.path), baseFormat: image.format, at: overlay)
        let key = try await SSHKeyPair.generate(at: dir + "/id_ed25519", comment: "kiln-stall")
        try await NoCloudSeed(instanceId: "stall", hostname: "stall", user: "kiln", authorizedKeys: [key.publicKey]).write(to: dir + "/seed.img")
        let port = try #require(SSHClient.freeLoopbackPort())
        let (accel, _) = await AcceleratorProbe(cacheDir: paths.cacheDir).detect()
        let vm = VirtualMachine(
            VMConfiguration(
                name: "stall-\(port)", disk: overlay, generation: .v1, cpus: 2, memoryMiB: 1024, accelerator: accel,
                seed: dir + "/seed.img", sshPort: port, runDirectory: dir))
        try await vm.start()
        defer { Task { await vm.forceKill() } }
        // QEMU may not listen on its QMP socket yet the moment its pid file appears: ask until it answers.
        var paused = await QMP.send(socket: vm.configuration.qmpSocket, command: "stop")
        for _ in 0..<50 where paused != .returned("{}") {
            try await Task.sleep(for: .milliseconds(200))
            paused = await QMP.send(socket: vm.configuration.qmpSocket, command: "stop")
        }
        #expect(paused == .returned("{}"))
        #expect(await QMP.isRunning(socket: vm.configuration.qmpSocket) == false, "the guest is paused")
        let resets = Recorded()
        let ssh = SSHClient(port: port, user: "kiln", keyPath: key.privateKeyPath)
        try await vm.waitForSSH(ssh, timeout: .seconds(240), resetAfter: .seconds(8), onReset: { resets.add($0) })
        #expect(try await ssh.run("true", timeout: .seconds(30)).status == 0)
        let said = resets.all
        #expect(said.count == 1 && said[0].hasPrefix("SSH was not ready after 8 s"), "\(said)")
        await vm.forceKill()
    }
}

actor PhaseRecorder {
    var all: [RunSubState] = []
    func add(_ p: RunSubState) { all.append(p) }
}

/// Lines a `@Sendable` callback reports, read back by the test.
final class Recorded: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func add(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}
