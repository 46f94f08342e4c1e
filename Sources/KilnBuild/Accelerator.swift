import Foundation
import KilnSystem
import Logging

/// How QEMU runs guest code.
public enum Accelerator: String, Sendable, Hashable, Codable {
    /// Hardware virtualisation through /dev/kvm.
    case kvm
    /// QEMU's software emulation: always works, several times slower.
    case tcg
}

/// Decides between KVM and TCG with a short probe.
///
/// `/dev/kvm` existing is not enough: under nested virtualisation a guest can hang forever (field notes:
/// a Linux kernel prints nothing under KVM here, while a boot sector runs fine). So the probe boots a
/// real kernel with `panic=-1` and no root filesystem under KVM and waits a few seconds for the
/// "Kernel panic" line on the serial console; silence means TCG. The answer is cached per host boot and
/// QEMU version. `KILN_ACCEL=kvm|tcg` overrides.
public struct AcceleratorProbe: Sendable {
    public var cacheDir: String
    public var logger: Logger
    public var timeout: Double = 8

    public init(cacheDir: String, logger: Logger = Logger(label: "kiln.accel")) {
        self.cacheDir = cacheDir
        self.logger = logger
    }

    /// Where bootstrap leaves a kernel for the probe.
    public var probeKernelPath: String { (cacheDir as NSString).appendingPathComponent("probe/vmlinuz") }
    var resultPath: String { (cacheDir as NSString).appendingPathComponent("accel.json") }

    struct Cached: Codable {
        var bootId: String
        var qemu: String
        var accelerator: Accelerator
        var reason: String
    }

    /// The accelerator to use and, when it is TCG for a reason worth knowing, a one-line notice.
    public func detect() async -> (Accelerator, notice: String?) {
        let env = ProcessInfo.processInfo.environment["KILN_ACCEL"]?.lowercased()
        if env == "kvm" { return (.kvm, nil) }
        if env == "tcg" { return (.tcg, nil) }
        guard FileManager.default.isReadableFile(atPath: "/dev/kvm"), FileManager.default.isWritableFile(atPath: "/dev/kvm") else {
            return (.tcg, "kiln: /dev/kvm is not available; using TCG software emulation (slower)")
        }
        let bootId = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        let qemu = (try? await ProcessRunner.run("qemu-system-x86_64", ["--version"]))?.stdout.split(separator: "\n").first.map(String.init) ?? ""
        if let data = FileManager.default.contents(atPath: resultPath),
            let cached = try? JSONDecoder().decode(Cached.self, from: data), cached.bootId == bootId, cached.qemu == qemu
        {
            return (cached.accelerator, cached.accelerator == .tcg ? "kiln: \(cached.reason); using TCG software emulation" : nil)
        }
        guard FileManager.default.fileExists(atPath: probeKernelPath) else {
            // Without a kernel to probe with, do not risk a VM that hangs.
            return (.tcg, "kiln: KVM not probed yet (no probe kernel; bootstrap an image first); using TCG software emulation")
        }
        let (accel, reason) = await probe(kernel: probeKernelPath)
        try? FileManager.default.ensureDirectory(cacheDir)
        if let data = try? JSONEncoder().encode(Cached(bootId: bootId, qemu: qemu, accelerator: accel, reason: reason)) {
            _ = FileManager.default.createFile(atPath: resultPath, contents: data)
        }
        logger.info("accelerator probe", metadata: ["accelerator": "\(accel.rawValue)", "reason": "\(reason)"])
        return (accel, accel == .tcg ? "kiln: \(reason); using TCG software emulation" : nil)
    }

    /// Boots `kernel` under KVM and watches the serial console.
    public func probe(kernel: String) async -> (Accelerator, String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-kvm-probe-\(UUID().uuidString)").path
        try? FileManager.default.ensureDirectory(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let serial = (dir as NSString).appendingPathComponent("serial.log")
        let args = [
            "-accel", "kvm", "-machine", "pc", "-m", "256", "-nodefaults", "-display", "none", "-monitor", "none",
            "-serial", "file:\(serial)", "-net", "none", "-kernel", kernel, "-append", "console=ttyS0 panic=-1",
            "-no-reboot", "-name", "kiln-kvm-probe,process=kiln-kvm-probe"
        ]
        let pid: pid_t
        do {
            pid = try VirtualMachine.spawn(args, in: nil, output: (dir as NSString).appendingPathComponent("qemu.out")).pid
        } catch {
            return (.tcg, "KVM failed to start a probe VM (\(error))")
        }
        let start = Date()
        var seen = false
        while Date().timeIntervalSince(start) < timeout {
            let log = (try? String(contentsOfFile: serial, encoding: .utf8)) ?? ""
            if log.contains("Kernel panic") { seen = true; break }
            if Foundation.kill(pid, 0) != 0 || VirtualMachine.isZombie(pid) {
                // QEMU exited: with -no-reboot that is the panic's reboot, i.e. the kernel ran.
                seen = log.contains("Linux version")
                break
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        Foundation.kill(pid, SIGKILL)
        // A VM stuck in KVM can take a moment to die; reap it so it leaves no zombie.
        for _ in 0..<50 {
            var status: Int32 = 0
            // The spawn's reaper thread may have collected it already.
            if waitpid(pid, &status, WNOHANG) == pid || Foundation.kill(pid, 0) != 0 { break }
            try? await Task.sleep(for: .milliseconds(100))
        }
        let elapsed = String(format: "%.1f", Date().timeIntervalSince(start))
        return seen
            ? (.kvm, "a probe kernel booted under KVM in \(elapsed) s")
            : (.tcg, "KVM is not usable here (a probe kernel printed nothing in \(Int(timeout)) s)")
    }

    static func readPid(_ path: String) -> pid_t? {
        guard let s = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return pid_t(s.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
