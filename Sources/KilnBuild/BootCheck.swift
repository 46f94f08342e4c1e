import Foundation
import KilnStore
import KilnSystem
import Logging

/// Boots an image in a throwaway VM with a fresh key handed over through a NoCloud seed, logs in over SSH
/// and runs a command: the proof that an image is usable, and the boot-to-SSH benchmark.
public struct BootCheck: Sendable {
    public struct Outcome: Sendable {
        public var accelerator: Accelerator
        public var acceleratorNotice: String?
        /// From starting QEMU to a successful SSH login.
        public var bootToSSH: Duration
        public var output: String
        public var status: Int32
    }

    public var paths: KilnPaths
    public var logger: Logger
    public var cpus = 2
    public var memoryMiB = 1024
    public var sshTimeout: Duration = .seconds(300)

    public init(paths: KilnPaths, logger: Logger = Logger(label: "kiln.bootcheck")) {
        self.paths = paths
        self.logger = logger
    }

    /// Boots `disk` (never modified: the VM writes to an overlay) and runs `command`.
    public func run(
        disk: String, format: String = "qcow2", generation: HyperVGeneration, command: String,
        accelerator: (Accelerator, String?)? = nil
    ) async throws -> Outcome {
        let (accel, notice): (Accelerator, String?)
        if let accelerator {
            (accel, notice) = accelerator
        } else {
            (accel, notice) = await AcceleratorProbe(cacheDir: paths.cacheDir).detect()
        }
        let id = "check-\(UUID().uuidString.prefix(8).lowercased())"
        let dir = (paths.vms as NSString).appendingPathComponent(id)
        try FileManager.default.ensureDirectory(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let overlay = (dir as NSString).appendingPathComponent("overlay.qcow2")
        try await DiskTool.createOverlay(base: disk, baseFormat: format, at: overlay)
        let key = try await SSHKeyPair.generate(at: (dir as NSString).appendingPathComponent("id_ed25519"), comment: "kiln-\(id)")
        let seed = (dir as NSString).appendingPathComponent("seed.img")
        try await NoCloudSeed(instanceId: id, hostname: id, user: "kiln", authorizedKeys: [key.publicKey]).write(to: seed)
        guard let port = SSHClient.freeLoopbackPort() else { throw VMError.startFailed("no free loopback port") }
        let vm = VirtualMachine(
            VMConfiguration(
                name: id, disk: overlay, generation: generation, cpus: cpus, memoryMiB: memoryMiB,
                accelerator: accel, seed: seed, sshPort: port, runDirectory: dir))
        let start = ContinuousClock.now
        try await vm.start()
        do {
            let ssh = SSHClient(port: port, user: "kiln", keyPath: key.privateKeyPath)
            try await vm.waitForSSH(ssh, timeout: sshTimeout, resetAfter: sshTimeout)
            let elapsed = ContinuousClock.now - start
            let r = try await ssh.run(command, timeout: .seconds(120))
            await vm.forceKill()
            return Outcome(accelerator: accel, acceleratorNotice: notice, bootToSSH: elapsed, output: r.stdout + r.stderr, status: r.status)
        } catch {
            await vm.forceKill()
            throw error
        }
    }
}
