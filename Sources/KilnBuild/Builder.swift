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
    /// The build user, as AIB's is: passwordless sudo.
    public var user = "packer"

    public init(runId: String, template: ImageTemplate, source: ResolvedSource, artifacts: [String: String], workDirectory: String,
                logDirectory: String, capturedDisk: String, accelerator: Accelerator) {
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

    public init(request: BuildRequest, logger: Logger = Logger(label: "kiln.build"),
                onPhase: @escaping @Sendable (RunSubState) async -> Void = { _ in }, onLogLine: (@Sendable (String) -> Void)? = nil) {
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
        return BuildResult(capturedDisk: request.capturedDisk, sha256: sha, virtualSize: info.virtualSize,
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
                throw .io("osDiskSizeGB \(t.properties.vmProfile.osDiskSizeGB) is smaller than the source disk (\(request.source.virtualSize >> 30) GiB); disks can only grow")
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
        log.line("VM up: \(size.cpus) vCPU, \(size.memoryMiB) MiB, \(request.accelerator.rawValue); SSH on 127.0.0.1:\(ssh.port)")
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
        log.line("captured \(request.capturedDisk) (\(info.virtualSize >> 20) MiB virtual, \(DiskTool.allocatedSize(request.capturedDisk) >> 20) MiB on disk, sha256 \(sha))")
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
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    // MARK: VM

    func boot(disk: String, name: String, cpus: Int, memoryMiB: Int, log: BuildLog) async throws -> (VirtualMachine, SSHClient) {
        let dir = (request.workDirectory as NSString).appendingPathComponent(name == request.runId ? "vm" : name)
        try FileManager.default.ensureDirectory(dir)
        let key = try await SSHKeyPair.generate(at: (dir as NSString).appendingPathComponent("id_ed25519"), comment: "kiln-\(request.runId)")
        let seed = (dir as NSString).appendingPathComponent("seed.img")
        try await NoCloudSeed(instanceId: "\(request.runId)-\(name)", hostname: "kiln-\(String(request.runId.prefix(8)))", user: request.user,
                              authorizedKeys: [key.publicKey]).write(to: seed)
        guard let port = SSHClient.freeLoopbackPort() else { throw BuildError.io("no free loopback port for SSH") }
        let vm = VirtualMachine(VMConfiguration(name: "\(request.runId)-\(name)", disk: disk, generation: request.source.generation, cpus: cpus,
                                                memoryMiB: memoryMiB, accelerator: request.accelerator, seed: seed, sshPort: port, runDirectory: dir))
        do {
            try await vm.start(onWaitForSlot: { log.line("waiting for a free VM slot (KILN_MAX_VMS: at most that many build VMs run on this host at once)") })
            let ssh = SSHClient(port: port, user: request.user, keyPath: key.privateKeyPath)
            log.line("waiting for SSH (up to \(request.sshTimeout.components.seconds) s)")
            try await vm.waitForSSH(ssh, timeout: request.sshTimeout)
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

    // MARK: Customizers

    func customize(vm: VirtualMachine, ssh: SSHClient, log: BuildLog) async throws {
        let list = request.template.properties.customize
        for (i, c) in list.enumerated() {
            try Task.checkCancellation()
            let name = c.name ?? "\(c.kind.rawValue.lowercased())-\(i + 1)"
            log.marker("[\(i + 1)/\(list.count)] \(c.kind.rawValue) '\(name)': start")
            let start = ContinuousClock.now
            switch c {
            case .shell(let s):
                try await runShell(s, index: i, name: name, ssh: ssh, log: log, kind: "Shell")
            case .file(let f):
                try await uploadFile(f, index: i, name: name, ssh: ssh, log: log)
            case .windowsRestart(let r):
                try await restart(r, index: i, name: name, vm: vm, ssh: ssh, log: log)
            case .powerShell(let p):
                try await runPowerShell(p, index: i, name: name, ssh: ssh, log: log, failure: { code in
                    BuildError.customizerFailed(index: i, name: name, type: "PowerShell", exitCode: code, logTail: log.tail(15), keptVM: nil)
                })
            case .windowsUpdate:
                throw BuildError.customizerUnsupported(index: i, name: name,
                    reason: "WindowsUpdate runs on Windows images only; the source \(request.source.reference) is \(request.source.osType.rawValue)")
            }
            log.marker("[\(i + 1)/\(list.count)] \(c.kind.rawValue) '\(name)': done in \(String(format: "%.1f", seconds(since: start))) s")
        }
    }

    /// The staged local copy of an artifact.
    func staged(_ reference: String) throws -> String {
        guard let path = request.artifacts[reference] else { throw BuildError.io("the artifact \(reference) was not staged") }
        return path
    }

    /// Copies a local file into the guest at `remote` (as the build user).
    func upload(_ local: String, to remote: String, ssh: SSHClient) async throws {
        guard let data = FileManager.default.contents(atPath: local) else { throw BuildError.io("cannot read \(local)") }
        let r = try await ssh.run("cat > '\(remote)'", timeout: .seconds(600), input: data)
        guard r.status == 0 else { throw BuildError.io("upload to \(remote) failed: \(r.combined)") }
    }

    /// Runs a guest command, streaming its output into the log; returns the exit status.
    func stream(_ command: String, ssh: SSHClient, log: BuildLog) async throws -> Int32 {
        let r = try await ssh.run(command, onOutputLine: { log.line("    \($0)") })
        return r.status
    }

    func scriptText(_ source: ScriptSource) throws -> Data {
        switch source {
        case .inline(let lines): return Data((lines.joined(separator: "\n") + "\n").utf8)
        case .uri(let u):
            let path = try staged(u)
            guard let d = FileManager.default.contents(atPath: path) else { throw BuildError.io("cannot read the staged \(u)") }
            return d
        }
    }

    func runShell(_ s: ShellScript, index i: Int, name: String, ssh: SSHClient, log: BuildLog, kind: String) async throws {
        let remote = "/tmp/kiln-script-\(i + 1).sh"
        let dir = (request.workDirectory as NSString).appendingPathComponent("scripts")
        try FileManager.default.ensureDirectory(dir)
        let local = (dir as NSString).appendingPathComponent("\(i + 1).sh")
        try scriptText(s.script).write(to: URL(fileURLWithPath: local))
        try await upload(local, to: remote, ssh: ssh)
        // Inline lines run as one script with `set -e` (Packer's `/bin/sh -e`); a scriptUri runs with its
        // own interpreter line, or /bin/sh without one.
        let command: String
        switch s.script {
        case .inline: command = "chmod +x \(remote) && /bin/sh -e \(remote)"
        case .uri: command = "chmod +x \(remote) && if head -c2 \(remote) | grep -q '#!'; then \(remote); else /bin/sh \(remote); fi"
        }
        let status = try await stream(command, ssh: ssh, log: log)
        guard status == 0 else {
            log.line("\(kind) '\(name)' exited with status \(status)")
            throw BuildError.customizerFailed(index: i, name: name, type: kind, exitCode: status, logTail: Array(log.tail(16).dropLast()), keptVM: nil)
        }
    }

    func runPowerShell(_ p: PowerShellScript, index i: Int, name: String, ssh: SSHClient, log: BuildLog,
                       failure: (Int32) -> BuildError) async throws {
        let which = try await ssh.run("command -v pwsh", timeout: .seconds(60))
        guard which.status == 0 else {
            throw BuildError.customizerUnsupported(index: i, name: name,
                reason: "PowerShell needs pwsh in the image, and \(request.source.reference) has none; install it in an earlier Shell step or use a Shell customizer")
        }
        let remote = "/tmp/kiln-script-\(i + 1).ps1"
        let local = (request.workDirectory as NSString).appendingPathComponent("script-\(i + 1).ps1")
        try scriptText(p.script).write(to: URL(fileURLWithPath: local))
        try await upload(local, to: remote, ssh: ssh)
        let sudo = p.runElevated ? "sudo " : ""
        let status = try await stream("\(sudo)pwsh -NoProfile -NonInteractive -ExecutionPolicy Bypass -File \(remote)", ssh: ssh, log: log)
        guard p.validExitCodes.contains(Int(status)) else {
            log.line("PowerShell '\(name)' exited with \(status), not one of validExitCodes \(p.validExitCodes)")
            throw failure(status)
        }
    }

    func uploadFile(_ f: FileCopy, index i: Int, name: String, ssh: SSHClient, log: BuildLog) async throws {
        let local = try staged(f.sourceUri)
        let tmp = "/tmp/kiln-file-\(i + 1)"
        try await upload(local, to: tmp, ssh: ssh)
        let expected = try f.sha256Checksum ?? DiskTool.sha256(of: local)
        let dest = f.destination.replacingOccurrences(of: "'", with: "'\\''")
        let cmd = "sudo mkdir -p \"$(dirname '\(dest)')\" && sudo mv \(tmp) '\(dest)' && sudo sha256sum '\(dest)' | cut -d' ' -f1"
        let r = try await ssh.run(cmd, timeout: .seconds(300))
        let actual = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard r.status == 0 else {
            log.line(r.combined)
            throw BuildError.customizerFailed(index: i, name: name, type: "File", exitCode: r.status, logTail: log.tail(8), keptVM: nil)
        }
        guard actual == expected.lowercased() else {
            log.line("checksum mismatch for \(f.destination): expected \(expected), found \(actual)")
            throw BuildError.customizerFailed(index: i, name: name, type: "File", exitCode: 1, logTail: log.tail(4), keptVM: nil)
        }
        log.line("uploaded \(f.sourceUri) to \(f.destination) (sha256 \(actual))")
    }

    /// WindowsRestart on Linux: run the restart command (AIB's Windows default becomes `sudo reboot`), wait
    /// for the guest to come back with a new boot id, then poll the check command until it succeeds.
    func restart(_ r: WindowsRestart, index i: Int, name: String, vm: VirtualMachine, ssh: SSHClient, log: BuildLog) async throws {
        let command = r.restartCommand == WindowsRestart.defaultRestartCommand ? "sudo reboot" : r.restartCommand
        let timeout = Duration.seconds(TemplateDuration.seconds(r.restartTimeout) ?? 300)
        let before = try await ssh.run("cat /proc/sys/kernel/random/boot_id", timeout: .seconds(60)).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        log.line("restarting with: \(command)")
        // The command usually drops the connection; its exit status is not meaningful.
        _ = try? await ssh.run("nohup sh -c '\(command.replacingOccurrences(of: "'", with: "'\\''"))' >/dev/null 2>&1 &", timeout: .seconds(30))
        let deadline = ContinuousClock.now + timeout
        var rebooted = false
        var lastState = SSHReadiness.ready
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            guard await vm.isRunning else { throw BuildError.vm(.exited(console: await vm.consoleTail())) }
            // The cheap banner check first: while the guest shuts down and boots, a full ssh attempt would
            // sit in its connect timeout.
            let state = await ssh.check()
            if state != lastState {
                log.line("  ssh: \(state)")
                lastState = state
            }
            guard state == .ready else {
                try await Task.sleep(for: .milliseconds(500))
                continue
            }
            if let id = try? await ssh.run("cat /proc/sys/kernel/random/boot_id", timeout: .seconds(20)), id.status == 0,
               id.stdout.trimmingCharacters(in: .whitespacesAndNewlines) != before {
                rebooted = true
                break
            }
            try await Task.sleep(for: .seconds(2))
        }
        guard rebooted else {
            log.line("the VM did not come back with a new boot id within restartTimeout \(r.restartTimeout)")
            throw BuildError.customizerFailed(index: i, name: name, type: "WindowsRestart", exitCode: -1, logTail: log.tail(6), keptVM: nil)
        }
        log.line("the VM restarted (boot id \(before.prefix(8)) → new)")
        guard !r.restartCheckCommand.isEmpty else { return }
        var last: Int32 = -1
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            last = try await stream(r.restartCheckCommand, ssh: ssh, log: log)
            if last == 0 { return }
            try await Task.sleep(for: .seconds(5))
        }
        throw BuildError.customizerFailed(index: i, name: name, type: "WindowsRestart", exitCode: last, logTail: log.tail(8), keptVM: nil)
    }

    // MARK: Deprovision and shutdown

    /// AIB's Linux default: `waagent -force -deprovision+user` where waagent exists; otherwise Kiln's
    /// equivalent (cloud-init clean, machine-id truncated, SSH host keys and the build user removed).
    public static let defaultDeprovisioningScript = """
        #!/bin/sh
        # Kiln's default deprovisioning (AIB: /tmp/DeprovisioningScript.sh; a customizer may overwrite it).
        if command -v waagent >/dev/null 2>&1; then
          waagent -force -deprovision+user && export HISTSIZE=0 && sync
          exit 0
        fi
        if command -v cloud-init >/dev/null 2>&1; then cloud-init clean --logs || true; fi
        truncate -s 0 /etc/machine-id
        rm -f /var/lib/dbus/machine-id /var/lib/kiln/instance-id
        rm -f /etc/ssh/ssh_host_*
        rm -rf /tmp/kiln-* /var/tmp/*
        rm -f /root/.bash_history
        journalctl --rotate >/dev/null 2>&1 && journalctl --vacuum-time=1s >/dev/null 2>&1 || true
        sync

        """

    /// Runs after the last SSH session, under PID 1: deprovisioning removes the SSH host keys, so no new
    /// connection could be made after it. Output goes to the serial console, which the host reads back.
    static func finalizeScript(user: String) -> String {
        """
        #!/bin/sh
        exec > /dev/ttyS0 2>&1
        sleep 1
        echo "kiln-deprovision: start"
        sh /tmp/DeprovisioningScript.sh
        status=$?
        echo "kiln-deprovision: status $status"
        rm -f /etc/sudoers.d/90-kiln-\(user) /tmp/DeprovisioningScript.sh /tmp/kiln-finalize.sh
        userdel -f -r \(user) >/dev/null 2>&1 || true
        sync
        systemctl poweroff || poweroff -f

        """
    }

    func deprovisionAndShutdown(vm: VirtualMachine, ssh: SSHClient, log: BuildLog) async throws {
        log.marker("Deprovisioning")
        let custom = try await ssh.run("test -s /tmp/DeprovisioningScript.sh", timeout: .seconds(60)).status == 0
        if !custom {
            let local = (request.workDirectory as NSString).appendingPathComponent("DeprovisioningScript.sh")
            try Self.defaultDeprovisioningScript.write(toFile: local, atomically: true, encoding: .utf8)
            try await upload(local, to: "/tmp/DeprovisioningScript.sh", ssh: ssh)
        } else {
            log.line("using the /tmp/DeprovisioningScript.sh a customizer wrote")
        }
        let finalize = (request.workDirectory as NSString).appendingPathComponent("kiln-finalize.sh")
        try Self.finalizeScript(user: request.user).write(toFile: finalize, atomically: true, encoding: .utf8)
        try await upload(finalize, to: "/tmp/kiln-finalize.sh", ssh: ssh)
        log.line("deprovisioning, removing the build user '\(request.user)' and powering off")
        let r = try await ssh.run("sudo systemd-run --quiet --no-block --unit=kiln-finalize sh /tmp/kiln-finalize.sh", timeout: .seconds(60))
        guard r.status == 0 else { throw BuildError.io("cannot start deprovisioning: \(r.combined)") }
        let off = await vm.waitForExit(timeout: .seconds(300))
        // The deprovisioning output, from the serial console.
        // Decoded leniently: firmware and boot loaders write bytes that are not UTF-8.
        let console = String(decoding: FileManager.default.contents(atPath: vm.configuration.serialLog) ?? Data(), as: UTF8.self)
        var inside = false
        var status: Int?
        // "\r\n" is one Character in Swift: drop the carriage returns before splitting into lines.
        for raw in console.replacingOccurrences(of: "\r", with: "").split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if line.contains("kiln-deprovision: start") { inside = true; continue }
            if let r = line.range(of: "kiln-deprovision: status ") {
                status = Int(line[r.upperBound...].trimmingCharacters(in: .whitespaces))
                inside = false
                continue
            }
            if inside { log.line("    \(line)") }
        }
        if !off {
            log.line("the VM did not power off in 300 s; stopping it")
            await vm.stop(grace: .seconds(30))
        } else {
            log.line("the VM powered off")
        }
        guard let status else { throw BuildError.io("deprovisioning did not report a result; see the serial console") }
        guard status == 0 else { throw BuildError.io("deprovisioning (/tmp/DeprovisioningScript.sh) failed with exit code \(status); see customization.log") }
    }

    // MARK: Validation

    func validate() async throws {
        let t = request.template
        let vlog = BuildLog(path: (request.logDirectory as NSString).appendingPathComponent("validation.log"), echo: onLogLine)
        let fromSource = t.properties.validate.sourceValidationOnly
        let base = fromSource ? request.source.disk : request.capturedDisk
        vlog.marker("Validating \(fromSource ? "the source image" : "the captured image") in a fresh VM")
        let disk = (request.workDirectory as NSString).appendingPathComponent("validate-disk.qcow2")
        try await DiskTool.createOverlay(base: base, baseFormat: "qcow2", at: disk)
        let size = buildVMSize()
        let (vm, ssh) = try await boot(disk: disk, name: "validate", cpus: size.cpus, memoryMiB: size.memoryMiB, log: vlog)
        var keep = false
        defer {
            if !keep { Task { await vm.forceKill() } }
        }
        let list = t.properties.validate.inVMValidations
        for (i, v) in list.enumerated() {
            try Task.checkCancellation()
            let name: String
            do {
                switch v {
                case .shell(let s):
                    name = s.name ?? "shell-\(i + 1)"
                    vlog.marker("[\(i + 1)/\(list.count)] Shell '\(name)'")
                    try await runShell(s, index: 100 + i, name: name, ssh: ssh, log: vlog, kind: "Shell")
                case .powerShell(let p):
                    name = p.name ?? "powershell-\(i + 1)"
                    vlog.marker("[\(i + 1)/\(list.count)] PowerShell '\(name)'")
                    try await runPowerShell(p, index: 100 + i, name: name, ssh: ssh, log: vlog, failure: { code in
                        BuildError.validationFailed("PowerShell validator '\(name)' exited with \(code)", keptVM: nil)
                    })
                case .file(let f):
                    name = f.name ?? "file-\(i + 1)"
                    vlog.marker("[\(i + 1)/\(list.count)] File '\(name)'")
                    try await uploadFile(f, index: 100 + i, name: name, ssh: ssh, log: vlog)
                }
            } catch let e as BuildError {
                let what: String
                switch e {
                case .customizerFailed(_, let n, let type, let code, let tail, _):
                    what = "\(type) validator '\(n)' exited with \(code)" + (tail.isEmpty ? "" : "; last lines of validation.log:\n" + tail.joined(separator: "\n"))
                case .customizerUnsupported(_, let n, let reason): what = "validator '\(n)': \(reason)"
                default: what = e.description
                }
                if t.properties.errorHandling.onValidationError == .abort {
                    keep = true
                    throw BuildError.validationFailed(what, keptVM: "The validation VM was kept (errorHandling.onValidationError: abort). Get in with:\n  \(ssh.interactiveCommand)\nClean up later with:\n  kill $(cat \(vm.configuration.pidFile)) && rm -rf \(request.workDirectory)")
                }
                await vm.forceKill()
                throw BuildError.validationFailed(what, keptVM: nil)
            }
        }
        await vm.forceKill()
        vlog.marker("validation passed")
    }
}

