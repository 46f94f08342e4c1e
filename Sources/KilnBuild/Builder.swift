// One build: its request, result and errors, and the phases that boot, customize, capture and validate.
import Foundation
import KilnStore
import KilnSystem
import KilnTemplates
import Logging

/// Everything one build needs, prepared by the orchestration core.
public struct BuildRequest: Sendable {
    public var runId: String
    public var template: ImageTemplate
    public var source: ResolvedSource
    /// Staged copies of the template's artifacts: the `scriptUri`/`sourceUri` as written → a local file.
    public var artifacts: [String: String]
    /// The run's private directory: overlay, seed, key, serial console, pid file.
    public var workDirectory: String
    /// Where `customization.log` and `validation.log` go (the staging area's `packerlogs/<runId>/`).
    public var logDirectory: String
    /// Where the captured image is written (qcow2).
    public var capturedDisk: String
    public var accelerator: Accelerator
    public var sshTimeout: Duration = .seconds(300)
    /// The build VM's network: isolated from the host when this process can set that up.
    public var network: BuildNetworkPolicy = .automatic()
    /// The build user, as AIB's is: passwordless sudo.
    public var user = "packer"

    public init(
        runId: String, template: ImageTemplate, source: ResolvedSource, artifacts: [String: String], workDirectory: String,
        logDirectory: String, capturedDisk: String, accelerator: Accelerator
    ) {
        self.runId = runId
        self.template = template
        self.source = source
        self.artifacts = artifacts
        self.workDirectory = workDirectory
        self.logDirectory = logDirectory
        self.capturedDisk = capturedDisk
        self.accelerator = accelerator
    }
}

/// What a finished build produced.
public struct BuildResult: Sendable {
    public var capturedDisk: String
    public var sha256: String
    public var virtualSize: Int64
    /// Set when in-VM validation failed but `continueDistributeOnFailure` lets distribution go on (the run
    /// still ends Failed).
    public var validationFailure: String?
    /// Notes for the run's message (e.g. what optimization did).
    public var notes: [String]

    public init(capturedDisk: String, sha256: String, virtualSize: Int64, validationFailure: String? = nil, notes: [String] = []) {
        self.capturedDisk = capturedDisk
        self.sha256 = sha256
        self.virtualSize = virtualSize
        self.validationFailure = validationFailure
        self.notes = notes
    }
}

/// Why a build failed, worded for `lastRunStatus.message`.
public enum BuildError: Error, Sendable, CustomStringConvertible {
    case vm(VMError)
    case customizerFailed(index: Int, name: String, type: String, exitCode: Int32, logTail: [String], keptVM: String?)
    case customizerUnsupported(index: Int, name: String, reason: String)
    case validationFailed(String, keptVM: String?)
    case canceled
    case io(String)

    public var description: String {
        switch self {
        case .vm(let e): return e.description
        case .customizerFailed(let i, let name, let type, let code, let tail, let kept):
            var s = "customizer \(i + 1) (\(type) '\(name)') failed with exit code \(code)"
            if !tail.isEmpty { s += "; last lines of customization.log:\n" + tail.joined(separator: "\n") }
            if let kept { s += "\n\(kept)" }
            return s
        case .customizerUnsupported(let i, let name, let reason): return "customizer \(i + 1) ('\(name)'): \(reason)"
        case .validationFailed(let m, let kept): return "validation failed: \(m)" + (kept.map { "\n\($0)" } ?? "")
        case .canceled: return "the run was canceled"
        case .io(let m): return m
        }
    }
}

/// Runs one build: boot the source in a VM, customize it over SSH, deprovision, capture, validate.
///
/// The caller owns scheduling, timeouts and cancellation (Swift task cancellation): on cancellation the VM is
/// killed and its overlay removed, unless `errorHandling` asked to keep it after a failure.
public struct Builder: Sendable {
    public var request: BuildRequest
    public var logger: Logger
    /// Called at each phase change.
    public var onPhase: @Sendable (RunSubState) async -> Void
    /// Every log line (for `--follow`).
    public var onLogLine: (@Sendable (String) -> Void)?

    public init(
        request: BuildRequest, logger: Logger = Logger(label: "kiln.build"),
        onPhase: @escaping @Sendable (RunSubState) async -> Void = { _ in }, onLogLine: (@Sendable (String) -> Void)? = nil
    ) {
        self.request = request
        self.logger = logger
        self.onPhase = onPhase
        self.onLogLine = onLogLine
    }

    var log: BuildLog { BuildLog(path: (request.logDirectory as NSString).appendingPathComponent("customization.log"), echo: onLogLine) }

    public func run() async throws(BuildError) -> BuildResult {
        let log = self.log
        do { try FileManager.default.ensureDirectory(request.workDirectory) } catch { throw .io("cannot create \(request.workDirectory): \(error)") }
        await onPhase(.building)
        let (vm, ssh, overlay) = try await bootBuildVM(log: log)
        await onPhase(.customizing)
        try await customizeAndShutDown(vm: vm, ssh: ssh, log: log)
        let (sha, info) = try await capture(overlay, log: log)
        var notes: [String] = []
        // Optimizing: Kiln does nothing here yet, and says so.
        if request.template.properties.optimize.vmBoot.state == .enabled {
            await onPhase(.optimizing)
            let note = "optimize.vmBoot: no boot optimization is implemented in Kiln yet; the image was not changed"
            log.marker(note)
            notes.append(note)
        }
        let validationFailure = try await validateIfAsked()
        try? FileManager.default.removeItem(atPath: request.workDirectory)
        return BuildResult(
            capturedDisk: request.capturedDisk, sha256: sha, virtualSize: info.virtualSize,
            validationFailure: validationFailure, notes: notes)
    }

    /// Building: overlay on the source, key, seed, VM, SSH.
    func bootBuildVM(log: BuildLog) async throws(BuildError) -> (VirtualMachine, SSHClient, overlay: String) {
        let t = request.template
        log.marker("Building: source \(request.source.reference) (\(request.source.generation.rawValue)), run \(request.runId)")
        let size = buildVMSize()
        let overlay = (request.workDirectory as NSString).appendingPathComponent("os-disk.qcow2")
        var growTo: Int64?
        let wanted = Int64(t.properties.vmProfile.osDiskSizeGB) << 30
        if wanted > 0 {
            guard wanted >= request.source.virtualSize else {
                throw .io(
                    "osDiskSizeGB \(t.properties.vmProfile.osDiskSizeGB) is smaller than the source disk (\(request.source.virtualSize >> 30) GiB); disks can only grow"
                )
            }
            growTo = wanted
        }
        let vm: VirtualMachine
        let ssh: SSHClient
        do {
            try await DiskTool.createOverlay(base: request.source.disk, baseFormat: "qcow2", at: overlay, size: growTo)
            (vm, ssh) = try await boot(disk: overlay, name: request.runId, cpus: size.cpus, memoryMiB: size.memoryMiB, log: log)
        } catch let e as BuildError {
            throw e
        } catch {
            throw .io("\(error)")
        }
        log.line("VM up: \(size.cpus) vCPU, \(size.memoryMiB) MiB, \(request.accelerator.rawValue); SSH on \(ssh.host):\(ssh.port)")
        return (vm, ssh, overlay)
    }

    /// Customizing: the customizers in order, then deprovision and power-off. A failure is handled as
    /// `errorHandling.onCustomizerError` says (the VM kept for debugging, or killed).
    func customizeAndShutDown(vm: VirtualMachine, ssh: SSHClient, log: BuildLog) async throws(BuildError) {
        let onError = request.template.properties.errorHandling.onCustomizerError
        do {
            try await customize(vm: vm, ssh: ssh, log: log)
            try Task.checkCancellation()
            try await deprovisionAndShutdown(vm: vm, ssh: ssh, log: log)
        } catch let e as BuildError {
            await handleFailure(e, vm: vm, action: onError, log: log)
            throw keptVM(e, vm: vm, ssh: ssh, action: onError)
        } catch is CancellationError {
            await vm.forceKill()
            throw .canceled
        } catch {
            await vm.forceKill()
            throw .io("\(error)")
        }
    }

    /// Capture: flattens the overlay into a standalone, sparse image; returns its digest and size.
    func capture(_ overlay: String, log: BuildLog) async throws(BuildError) -> (sha256: String, info: DiskInfo) {
        let fm = FileManager.default
        log.marker("Capturing the OS disk")
        let sha: String
        let info: DiskInfo
        do {
            try fm.ensureDirectory((request.capturedDisk as NSString).deletingLastPathComponent)
            try? fm.removeItem(atPath: request.capturedDisk)
            try await DiskTool.convert(overlay, from: "qcow2", to: request.capturedDisk, format: "qcow2")
            try? fm.removeItem(atPath: overlay)
            sha = try DiskTool.sha256(of: request.capturedDisk)
            info = try await DiskTool.info(request.capturedDisk, format: "qcow2")
        } catch {
            throw .io("capture failed: \(error)")
        }
        log.line(
            "captured \(request.capturedDisk) (\(info.virtualSize >> 20) MiB virtual, \(DiskTool.allocatedSize(request.capturedDisk) >> 20) MiB on disk, sha256 \(sha))"
        )
        return (sha, info)
    }

    /// Validating, when the template has in-VM validations. Returns the failure that
    /// `continueDistributeOnFailure` lets distribution go on with; throws any other.
    func validateIfAsked() async throws(BuildError) -> String? {
        let v = request.template.properties.validate
        guard !v.inVMValidations.isEmpty else { return nil }
        await onPhase(.validating)
        do {
            try await validate()
            return nil
        } catch let e as BuildError {
            guard case .validationFailed(let m, _) = e, v.continueDistributeOnFailure else { throw e }
            return m
        } catch is CancellationError {
            throw .canceled
        } catch {
            throw .io("\(error)")
        }
    }

    /// vmSize → vCPUs and memory. Under TCG at least two vCPUs (when the host has them): QEMU emulates each
    /// vCPU on its own thread, and a one-vCPU guest boots about twice as slowly.
    func buildVMSize() -> VMSize {
        var size = VMSize.resolve(request.template.properties.vmProfile.vmSize, generation: request.source.generation)
        if request.accelerator == .tcg { size.cpus = max(size.cpus, min(2, ProcessInfo.processInfo.activeProcessorCount)) }
        return size
    }

    func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return d.inSeconds
    }

    // MARK: VM

    func boot(disk: String, name: String, cpus: Int, memoryMiB: Int, log: BuildLog) async throws -> (VirtualMachine, SSHClient) {
        let dir = (request.workDirectory as NSString).appendingPathComponent(name == request.runId ? "vm" : name)
        try FileManager.default.ensureDirectory(dir)
        let key = try await SSHKeyPair.generate(at: (dir as NSString).appendingPathComponent("id_ed25519"), comment: "kiln-\(request.runId)")
        let seed = (dir as NSString).appendingPathComponent("seed.img")
        try await NoCloudSeed(
            instanceId: "\(request.runId)-\(name)", hostname: "kiln-\(String(request.runId.prefix(8)))", user: request.user,
            authorizedKeys: [key.publicKey]
        ).write(to: seed)
        guard let port = SSHClient.freeLoopbackPort() else { throw BuildError.io("no free loopback port for SSH") }
        var config = VMConfiguration(
            name: "\(request.runId)-\(name)", disk: disk, generation: request.source.generation, cpus: cpus,
            memoryMiB: memoryMiB, accelerator: request.accelerator, seed: seed, sshPort: port, runDirectory: dir)
        config.network = request.network
        let vm = VirtualMachine(config)
        do {
            try await vm.start(onWaitForSlot: { log.line("waiting for a free VM slot (KILN_MAX_VMS: at most that many build VMs run on this host at once)") })
            if let n = await vm.network {
                log.line("network: namespace \(n.namespace) (pid \(n.holder.pid)); the build host and internal networks are unreachable from the VM")
            } else {
                log.line(
                    "network: QEMU user networking on the host (\(IsolatedNetwork.unavailableReason ?? "isolation turned off")); the VM can reach the host's loopback services at 10.0.2.2"
                )
            }
            let ssh = SSHClient(host: await vm.sshHost, port: port, user: request.user, keyPath: key.privateKeyPath)
            log.line("waiting for SSH (up to \(request.sshTimeout.components.seconds) s)")
            try await vm.waitForSSH(ssh, timeout: request.sshTimeout, resetAfter: request.sshTimeout, onReset: { log.line($0) })
            return (vm, ssh)
        } catch {
            await vm.forceKill()
            throw BuildError.vm(error)
        }
    }

    /// errorHandling: `cleanup` kills the VM; `abort` leaves it running for inspection.
    func handleFailure(_ e: BuildError, vm: VirtualMachine, action: ErrorHandling.Action, log: BuildLog) async {
        if action == .abort, case .customizerFailed = e {
            log.marker("errorHandling.onCustomizerError is abort: the build VM is left running")
            await vm.release()
            return
        }
        await vm.forceKill()
    }

    func keptVM(_ e: BuildError, vm: VirtualMachine, ssh: SSHClient, action: ErrorHandling.Action) -> BuildError {
        guard action == .abort, case .customizerFailed(let i, let n, let t, let c, let tail, _) = e else { return e }
        let pidFile = vm.configuration.pidFile
        let msg = """
            The build VM was kept (errorHandling.onCustomizerError: abort). Get in with:
              \(ssh.interactiveCommand)
            Clean up later with:
              kill $(cat \(pidFile)) && rm -rf \(request.workDirectory)
            """
        return .customizerFailed(index: i, name: n, type: t, exitCode: c, logTail: tail, keptVM: msg)
    }
}
