import Foundation
import KilnStore
import KilnSystem

/// Errors of the build VM.
public enum VMError: Error, Sendable, CustomStringConvertible {
    case startFailed(String)
    /// SSH did not become ready in time: the last readiness state and the serial console's tail.
    case sshTimeout(seconds: Int, last: SSHReadiness, console: String)
    /// The VM exited while Kiln waited for it.
    case exited(console: String)
    case firmwareMissing(String)
    /// The task waiting for the VM was canceled (a cancel request, the build timeout, the owner stopping).
    case canceled

    public var description: String {
        switch self {
        case .startFailed(let m): return "the VM did not start: \(m)"
        case .sshTimeout(let s, let last, let console):
            return "SSH was not ready after \(s) s; last attempt: \(last)\n--- serial console (last lines) ---\n\(console)"
        case .exited(let console): return "the VM exited unexpectedly\n--- serial console (last lines) ---\n\(console)"
        case .firmwareMissing(let path): return "UEFI firmware not found at \(path) (install the ovmf package)"
        case .canceled: return "canceled while waiting for the VM"
        }
    }
}

/// What to boot and how.
public struct VMConfiguration: Sendable, Hashable {
    /// Used in the QEMU process name (`kiln-<name>`) and file names.
    public var name: String
    public var disk: String
    public var diskFormat: String
    public var generation: HyperVGeneration
    public var cpus: Int
    public var memoryMiB: Int
    public var accelerator: Accelerator
    /// A NoCloud seed image, attached read-only.
    public var seed: String?
    /// Host loopback port forwarded to the guest's port 22.
    public var sshPort: Int
    /// Directory for the pid file, serial log, QMP socket and UEFI variables.
    public var runDirectory: String
    /// Where the VM's network lives (see `BuildNetworkPolicy`).
    public var network: BuildNetworkPolicy = .host

    public init(
        name: String, disk: String, diskFormat: String = "qcow2", generation: HyperVGeneration, cpus: Int = 2, memoryMiB: Int = 1024,
        accelerator: Accelerator, seed: String?, sshPort: Int, runDirectory: String
    ) {
        self.name = name
        self.disk = disk
        self.diskFormat = diskFormat
        self.generation = generation
        self.cpus = cpus
        self.memoryMiB = memoryMiB
        self.accelerator = accelerator
        self.seed = seed
        self.sshPort = sshPort
        self.runDirectory = runDirectory
    }

    public var pidFile: String { (runDirectory as NSString).appendingPathComponent("qemu.pid") }
    public var serialLog: String { (runDirectory as NSString).appendingPathComponent("serial.log") }
    public var qmpSocket: String { (runDirectory as NSString).appendingPathComponent("qmp.sock") }
    public var uefiVars: String { (runDirectory as NSString).appendingPathComponent("OVMF_VARS.fd") }

    public static let ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
    public static let ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"

    /// The qemu-system-x86_64 arguments.
    ///
    /// The root disk is NVMe: Debian's kernel has the NVMe driver built in, so Kiln's images boot without
    /// an initramfs. Networking is QEMU user mode with SSH forwarded from a loopback port only.
    public var qemuArguments: [String] { qemuArguments(sshAddress: "127.0.0.1") }

    /// The arguments with SSH forwarded from `sshAddress` (inside a build namespace, the namespace's address).
    public func qemuArguments(sshAddress: String) -> [String] {
        var a: [String] = ["-name", "kiln-\(name),process=kiln-\(name)", "-nodefaults", "-no-user-config"]
        switch accelerator {
        case .kvm: a += ["-accel", "kvm"]
        case .tcg: a += ["-accel", "tcg,thread=multi"]
        }
        a += ["-machine", generation == .v2 ? "q35" : "pc", "-smp", String(cpus), "-m", String(memoryMiB)]
        if generation == .v2 {
            a += [
                "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=\(Self.ovmfCode)",
                "-drive", "if=pflash,format=raw,unit=1,file=\(uefiVars)"
            ]
        }
        a += [
            "-drive", "file=\(disk),if=none,id=root,format=\(diskFormat),discard=unmap",
            "-device", "nvme,drive=root,serial=kiln-root,bootindex=0"
        ]
        if let seed {
            a += ["-drive", "file=\(seed),if=none,id=seed,format=raw,readonly=on", "-device", "nvme,drive=seed,serial=kiln-seed"]
        }
        a += [
            "-nic", "user,model=virtio-net-pci,hostfwd=tcp:\(sshAddress):\(sshPort)-:22",
            "-object", "rng-random,filename=/dev/urandom,id=rng0", "-device", "virtio-rng-pci,rng=rng0",
            "-serial", "file:\(serialLog)", "-display", "none", "-monitor", "none",
            "-qmp", "unix:\(qmpSocket),server=on,wait=off",
            "-pidfile", pidFile
        ]
        return a
    }
}

/// One QEMU process, with a pid file so that a restarted Kiln can find and stop a VM its predecessor left.
public actor VirtualMachine {
    public let configuration: VMConfiguration
    public private(set) var pid: pid_t?
    /// The QEMU process and the guard that stops it if this process dies.
    private var child: OwnedChild?
    /// The host-wide VM slot this VM holds while it runs (`KILN_MAX_VMS`), if a limit is set.
    private var slot: VMSlots.Slot?
    /// The VM's own network namespace, when isolated.
    public private(set) var network: IsolatedNetwork?

    /// Where the guest's SSH is forwarded: the build namespace's address, or the host's loopback.
    public var sshHost: String { network?.namespaceAddress ?? "127.0.0.1" }

    public init(_ configuration: VMConfiguration) {
        self.configuration = configuration
    }

    /// Starts QEMU as a child process (not `-daemonize`: a daemonized QEMU keeps inherited descriptors
    /// that stop Foundation from noticing its parent's exit). The pid file lets a restarted Kiln find and
    /// stop a VM whose Kiln crashed.
    public func start(onWaitForSlot: @Sendable () -> Void = {}) async throws(VMError) {
        let c = configuration
        if let slots = VMSlots.fromEnvironment() {
            do { slot = try await slots.acquire(onWait: onWaitForSlot) } catch { throw .startFailed("\(error)") }
        }
        do {
            try FileManager.default.ensureDirectory(c.runDirectory)
            if c.generation == .v2 {
                guard FileManager.default.fileExists(atPath: VMConfiguration.ovmfCode) else { throw VMError.firmwareMissing(VMConfiguration.ovmfCode) }
                if !FileManager.default.fileExists(atPath: c.uefiVars) {
                    try FileManager.default.copyItem(atPath: VMConfiguration.ovmfVars, toPath: c.uefiVars)
                }
            }
            try? FileManager.default.removeItem(atPath: c.serialLog)
            try? FileManager.default.removeItem(atPath: c.pidFile)
        } catch let e as VMError {
            throw e
        } catch {
            throw .startFailed("\(error)")
        }
        if case .isolated(let allow) = c.network {
            do { network = try await IsolatedNetwork.create(allow: allow) } catch { throw .startFailed("\(error)") }
        }
        let p: pid_t
        do {
            let owned = try Self.spawn(
                c.qemuArguments(sshAddress: sshHost), in: network,
                output: (c.runDirectory as NSString).appendingPathComponent("qemu.out"))
            child = owned
            p = owned.pid
        } catch {
            throw .startFailed("\(error)")
        }
        pid = p
        // QEMU writes its pid file once the machine is set up; an early exit is a start failure.
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if FileManager.default.fileExists(atPath: c.pidFile) { return }
            if Foundation.kill(p, 0) != 0 || Self.isZombie(p) { break }
            try? await Task.sleep(for: .milliseconds(50))
        }
        let out = (try? String(contentsOfFile: (c.runDirectory as NSString).appendingPathComponent("qemu.out"), encoding: .utf8)) ?? ""
        Foundation.kill(p, SIGKILL)
        Self.reap(p)
        pid = nil
        slot = nil
        await removeNetwork()
        throw .startFailed(out.isEmpty ? "QEMU exited without a message" : out.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// posix_spawn with stdout and stderr to `output`, stdin from /dev/null, no other descriptors; bound to this
    /// process, so a Kiln that is killed outright takes its VMs with it (see `BackgroundProcess.spawnOwned`).
    static func spawn(_ arguments: [String], in network: IsolatedNetwork?, output: String) throws -> OwnedChild {
        guard let exe = ProcessRunner.which("qemu-system-x86_64") else {
            throw CommandError(command: "qemu-system-x86_64", status: 127, output: "", reason: "not installed (run scripts/install-deps)")
        }
        // Its own process group: a Ctrl-C meant for kiln does not kill the VM mid-capture. In a build namespace,
        // nsenter enters it and execs QEMU (same pid, QEMU's command line).
        if let network {
            let enter = network.enter
            return try BackgroundProcess.spawnOwned(enter[0], Array(enter.dropFirst()) + [exe] + arguments, output: output)
        }
        return try BackgroundProcess.spawnOwned(exe, arguments, output: output)
    }

    /// Removes the VM's namespace once QEMU is gone (a VM kept running keeps it).
    private func removeNetwork() async {
        guard let n = network else { return }
        network = nil
        await n.remove()
    }

    /// Lets the VM outlive this process (kept for debugging after a failed customizer).
    public func release() {
        child?.release()
    }

    /// Collects an exited child so it does not linger as a zombie.
    static func reap(_ pid: pid_t) {
        var status: Int32 = 0
        _ = waitpid(pid, &status, WNOHANG)
    }

    static func isZombie(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    public var isRunning: Bool {
        guard let pid else { return false }
        if Self.isZombie(pid) {
            Self.reap(pid)
            slot = nil
            return false
        }
        let running = Self.isQEMU(pid: pid, name: configuration.name)
        if !running { slot = nil }
        return running
    }

    /// Whether `pid` is still the QEMU of VM `name` (a pid can be reused after it exits).
    public static func isQEMU(pid: pid_t, name: String) -> Bool {
        guard Foundation.kill(pid, 0) == 0 else { return false }
        guard let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return true }
        return String(decoding: cmdline, as: UTF8.self).contains("kiln-\(name)")
    }

    /// The last lines of the serial console, for error messages.
    public func consoleTail(lines: Int = 20) -> String {
        guard let data = FileManager.default.contents(atPath: configuration.serialLog) else { return "(no console output)" }
        let text = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\r", with: "")
        let printable = text.unicodeScalars.filter { $0 == "\n" || ($0.value >= 0x20 && $0.value != 0x7F && $0.value != 0x1B) }
        return String(String.UnicodeScalarView(printable)).split(separator: "\n", omittingEmptySubsequences: true).suffix(lines).joined(separator: "\n")
    }

    /// Waits until `ssh` logs in, reporting why not on timeout.
    ///
    /// With `resetAfter`, a guest that is not reachable by then is reset once (QMP `system_reset`, then `cont`, so a
    /// paused guest runs again: the same QEMU process, disk, port and slot) and given `timeout` again. Under TCG on a
    /// loaded host an early boot occasionally never finishes — seen in CI: GRUB handed over to the kernel, then 300 s
    /// of silence, where the same disk had booted in 32 s just before — and a second boot costs far less than a failed
    /// build. `onReset` hears about it first, so the build log says why the boot took twice.
    public func waitForSSH(
        _ client: SSHClient, timeout: Duration, resetAfter: Duration? = nil, onReset: @Sendable (String) -> Void = { _ in }
    ) async throws(VMError) {
        guard let resetAfter else { return try await waitForSSHOnce(client, timeout: timeout) }
        do {
            try await waitForSSHOnce(client, timeout: resetAfter)
        } catch .sshTimeout(let seconds, let last, let console) where isRunning {
            let lastLine = console.split(separator: "\n").last.map(String.init) ?? "(no console output)"
            onReset("SSH was not ready after \(seconds) s (\(last)); resetting the VM once (console: \(lastLine))")
            await resetAndResume()
            try await waitForSSHOnce(client, timeout: timeout)
        }
    }

    /// Resets the guest and makes sure its CPUs run afterwards (a guest paused before the reset stays paused
    /// until `cont`), checking with `query-status` rather than trusting that the commands arrived.
    private func resetAndResume() async {
        let socket = configuration.qmpSocket
        await QMP.send(socket: socket, command: "system_reset")
        for _ in 0..<5 {
            await QMP.send(socket: socket, command: "cont")
            if await QMP.isRunning(socket: socket) == true { return }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private func waitForSSHOnce(_ client: SSHClient, timeout: Duration) async throws(VMError) {
        let deadline = ContinuousClock.now + timeout
        var last = SSHReadiness.noBanner
        while ContinuousClock.now < deadline {
            // A timeout or cancel during boot must not wait out sshTimeout.
            if Task.isCancelled { throw .canceled }
            if !isRunning { throw .exited(console: consoleTail()) }
            last = await client.check()
            if last == .ready { return }
            try? await Task.sleep(for: .milliseconds(500))
        }
        throw .sshTimeout(seconds: Int(timeout.components.seconds), last: last, console: consoleTail())
    }

    /// Stops the VM: ACPI power-down through QMP, then SIGTERM, then SIGKILL.
    public func stop(grace: Duration = .seconds(20)) async {
        guard let pid, isRunning else {
            if !isRunning { await removeNetwork() }
            return
        }
        await QMP.send(socket: configuration.qmpSocket, command: "system_powerdown")
        if await waitForExit(timeout: grace) {
            await removeNetwork()
            return
        }
        Foundation.kill(pid, SIGTERM)
        if await waitForExit(timeout: .seconds(5)) { return }
        Foundation.kill(pid, SIGKILL)
        if await waitForExit(timeout: .seconds(5)) { await removeNetwork() }
    }

    /// Kills the VM at once (cancel, crash recovery).
    public func forceKill() async {
        guard let pid, isRunning else {
            if !isRunning { await removeNetwork() }
            return
        }
        Foundation.kill(pid, SIGKILL)
        if await waitForExit(timeout: .seconds(5)) { await removeNetwork() }
    }

    /// Waits for the QEMU process to go away.
    public func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !isRunning {
                await removeNetwork()
                return true
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
        if isRunning { return false }
        await removeNetwork()
        return true
    }
}
