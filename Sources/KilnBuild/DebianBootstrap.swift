import Crypto
import Foundation
import KilnStore
import KilnSystem
import Logging

/// Builds Kiln's Debian 12 base image from Debian's packages, in two cached stages:
///
/// 1. the root filesystem: `debootstrap --variant=minbase` with `DebianRecipe.packages`, then the recipe's
///    files, units and clean-ups (keyed by `DebianRecipe.rootfsFingerprint`);
/// 2. the disk for one generation: Gen1 = MBR + GRUB for BIOS, Gen2 = GPT + EFI system partition + GRUB
///    for UEFI; the ext4 root file system is made with `mkfs.ext4 -d` (no loop device, no mount), GRUB's
///    images are written with dd. Converted to qcow2.
///
/// Both stages live under `<cache>/debian-12/`, so a second bootstrap with the same inputs (another data
/// directory, another CI run on the same machine) costs a copy, not a debootstrap.
public struct DebianBootstrap: Sendable {
    public struct Result: Sendable {
        /// The qcow2 disk in the cache.
        public var disk: String
        public var kernel: String
        public var builtAt: Date
        public var cacheKey: String
        public var reused: Bool
        public var packages: [String]
        public var mirror: String
        /// The installed package set (`name version arch`, sorted) and its digest, part of the cache key.
        public var installed: [String]
        public var packageDigest: String
        /// Refresh only: the archive state the root file system was upgraded against, and whether apt ran.
        public var archive: ArchiveState?
        public var upgraded: Bool = false
    }

    public var cacheDir: String
    public var mirror: String
    public var diskSizeMiB: Int = 4096
    public var logger: Logger
    /// Progress lines for a person ("debootstrap: ...").
    public var progress: @Sendable (String) -> Void

    public init(
        cacheDir: String, mirror: String = DebianRecipe.defaultMirror, logger: Logger = Logger(label: "kiln.bootstrap"),
        progress: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.cacheDir = cacheDir
        self.mirror = mirror
        self.logger = logger
        self.progress = progress
    }

    public enum BootstrapError: Error, Sendable, CustomStringConvertible {
        case needsRoot
        case command(CommandError)
        case io(String)
        public var description: String {
            switch self {
            case .needsRoot: return "bootstrapping needs root (debootstrap and chroot); run it as root or with sudo"
            case .command(let e): return e.description
            case .io(let m): return m
            }
        }
    }

    var baseDir: String { (cacheDir as NSString).appendingPathComponent("debian-12") }

    static func sha256Hex(_ s: String) -> String {
        SHA256.hash(data: Data(s.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    public var rootfsKey: String { String(Self.sha256Hex(DebianRecipe.rootfsFingerprint(mirror: mirror)).prefix(16)) }

    /// The disk's key: the recipe (through the root file system's key), the generation and size, and the
    /// package set actually installed, so that an upgraded root file system is a different disk.
    public func diskKey(generation: HyperVGeneration, packageDigest: String) -> String {
        String(Self.sha256Hex("\(rootfsKey)|\(generation.rawValue)|\(diskSizeMiB)|\(packageDigest)|layout-r2").prefix(16))
    }

    struct DiskMeta: Codable {
        var builtAt: Date
        var rootfsKey: String
        var generation: String
        var mirror: String
        var packages: [String]
        var installed: [String]
        var packageDigest: String
    }

    /// Builds (or reuses) the disk for `generation`.
    ///
    /// The root file system gets the modes a Debian system expects whatever this process's umask is (`kiln`
    /// runs with 077): under 077, debootstrap, apt and Kiln's own files made `/etc/machine-id` 0600, which
    /// systemd-networkd (not root) cannot read, so the guest never asked for a DHCP lease. The umask is the
    /// process's, so it is 022 for the whole bootstrap and restored afterwards.
    public func build(generation: HyperVGeneration, force: Bool) async throws(BootstrapError) -> Result {
        guard geteuid() == 0 else { throw .needsRoot }
        let previous = umask(0o022)
        defer { umask(previous) }
        // One bootstrap at a time per cache: two at once would debootstrap into the same directories.
        let lock: CacheLock
        do { lock = try await CacheLock.acquire((baseDir as NSString).appendingPathComponent(".lock"), waiting: progress) } catch { throw .io("\(error)") }
        defer { lock.release() }
        return try await buildLocked(generation: generation, force: force)
    }

    func buildLocked(generation: HyperVGeneration, force: Bool) async throws(BootstrapError) -> Result {
        let rootfs = try await buildRootfs(force: force)
        let installed: [String]
        do { installed = try await Self.installedPackages(rootfs: rootfs) } catch { throw Self.wrap(error) }
        return try await disk(from: rootfs, installed: installed, generation: generation, force: force)
    }

    /// `kiln images refresh`: the disk of the root file system upgraded against `archive` (see DebianUpgrade).
    public func refresh(generation: HyperVGeneration, sources: DebianSources, archive: ArchiveState) async throws(BootstrapError) -> Result {
        guard geteuid() == 0 else { throw .needsRoot }
        let previous = umask(0o022)
        defer { umask(previous) }
        let lock: CacheLock
        do { lock = try await CacheLock.acquire((baseDir as NSString).appendingPathComponent(".lock"), waiting: progress) } catch { throw .io("\(error)") }
        defer { lock.release() }
        let upgraded = try await upgradedRootfs(sources: sources, archive: archive)
        var result = try await disk(from: upgraded.dir, installed: upgraded.record.installed, generation: generation, force: false)
        result.archive = upgraded.record.archive
        result.upgraded = upgraded.ran
        pruneDisks(generation: generation, keeping: result.cacheKey)
        return result
    }

    /// Stage 2, cached by `diskKey`: the disk of `rootfs` for `generation`.
    func disk(from rootfs: String, installed: [String], generation: HyperVGeneration, force: Bool) async throws(BootstrapError) -> Result {
        let packageDigest = Self.sha256Hex(installed.joined(separator: "\n"))
        let key = diskKey(generation: generation, packageDigest: packageDigest)
        let diskDir = (baseDir as NSString).appendingPathComponent("disk-\(key)")
        let disk = (diskDir as NSString).appendingPathComponent("disk.qcow2")
        let metaPath = (diskDir as NSString).appendingPathComponent("meta.json")
        let kernel = (diskDir as NSString).appendingPathComponent("vmlinuz")
        let fm = FileManager.default
        if !force, fm.fileExists(atPath: disk), let data = fm.contents(atPath: metaPath),
            let meta = try? JSONDecoder.iso.decode(DiskMeta.self, from: data)
        {
            progress("reusing the cached image \(key) (built \(ISO8601DateFormatter().string(from: meta.builtAt)); --force rebuilds)")
            return Result(
                disk: disk, kernel: kernel, builtAt: meta.builtAt, cacheKey: key, reused: true, packages: meta.packages, mirror: meta.mirror,
                installed: meta.installed, packageDigest: meta.packageDigest)
        }
        progress("making a Gen\(generation == .v1 ? "1 (BIOS)" : "2 (UEFI)") disk")
        let work = (baseDir as NSString).appendingPathComponent("tmp-\(UUID().uuidString)")
        do {
            try fm.ensureDirectory(work)
            defer { try? fm.removeItem(atPath: work) }
            let raw = (work as NSString).appendingPathComponent("disk.raw")
            try await makeDisk(rootfs: rootfs, generation: generation, at: raw, work: work)
            let qcow = (work as NSString).appendingPathComponent("disk.qcow2")
            try await DiskTool.convert(raw, from: "raw", to: qcow, format: "qcow2")
            try? fm.removeItem(atPath: diskDir)
            try fm.ensureDirectory(diskDir)
            try fm.moveItem(atPath: qcow, toPath: disk)
            let vmlinuz = try fm.destinationOfSymbolicLink(atPath: (rootfs as NSString).appendingPathComponent("vmlinuz"))
            try fm.copyItem(atPath: (rootfs as NSString).appendingPathComponent(vmlinuz), toPath: kernel)
            let meta = DiskMeta(
                builtAt: Date(), rootfsKey: rootfsKey, generation: generation.rawValue, mirror: mirror, packages: DebianRecipe.packages,
                installed: installed, packageDigest: packageDigest)
            try JSONEncoder.iso.encode(meta).write(to: URL(fileURLWithPath: metaPath))
            return Result(
                disk: disk, kernel: kernel, builtAt: meta.builtAt, cacheKey: key, reused: false, packages: meta.packages, mirror: mirror,
                installed: installed, packageDigest: packageDigest)
        } catch {
            throw Self.wrap(error)
        }
    }

    static func wrap(_ error: any Error) -> BootstrapError {
        switch error {
        case let e as BootstrapError: return e
        case let e as CommandError: return .command(e)
        default: return .io("\(error)")
        }
    }

    /// Keeps the cache bounded: per generation, the two newest disks (and `keeping`) stay; older ones, and
    /// disks of an older layout, go. Catalog images are hard links or copies, so they are not affected.
    func pruneDisks(generation: HyperVGeneration, keeping: String) {
        let fm = FileManager.default
        var mine: [(dir: String, builtAt: Date)] = []
        for name in (try? fm.contentsOfDirectory(atPath: baseDir)) ?? [] where name.hasPrefix("disk-") && name != "disk-\(keeping)" {
            let dir = (baseDir as NSString).appendingPathComponent(name)
            guard let data = fm.contents(atPath: (dir as NSString).appendingPathComponent("meta.json")),
                let meta = try? JSONDecoder.iso.decode(DiskMeta.self, from: data)
            else {
                try? fm.removeItem(atPath: dir)
                continue
            }
            if meta.generation == generation.rawValue { mine.append((dir, meta.builtAt)) }
        }
        for old in mine.sorted(by: { $0.builtAt > $1.builtAt }).dropFirst(1) { try? fm.removeItem(atPath: old.dir) }
    }

    /// Stage 1: the configured root filesystem directory.
    func buildRootfs(force: Bool) async throws(BootstrapError) -> String {
        let fm = FileManager.default
        let dir = (baseDir as NSString).appendingPathComponent("rootfs-\(rootfsKey)")
        let done = dir + ".done"
        if !force, fm.fileExists(atPath: done), fm.fileExists(atPath: dir) {
            progress("reusing the cached root file system \(rootfsKey)")
            return dir
        }
        let tmp = dir + ".tmp"
        do {
            try? fm.removeItem(atPath: tmp)
            try? fm.removeItem(atPath: done)
            try fm.ensureDirectory(baseDir)
            progress("debootstrap \(DebianRecipe.suite) (minbase + \(DebianRecipe.packages.count) packages) from \(mirror)")
            let logPath = (baseDir as NSString).appendingPathComponent("debootstrap-\(rootfsKey).log")
            _ = fm.createFile(atPath: logPath, contents: nil)
            let log = FileHandle(forWritingAtPath: logPath)
            defer { try? log?.close() }
            let progress = self.progress
            let r = try await ProcessRunner.run(
                "debootstrap",
                [
                    "--variant=minbase", "--include=\(DebianRecipe.packages.joined(separator: ","))",
                    DebianRecipe.suite, tmp, mirror
                ],
                timeout: .seconds(3600)
            ) { line in
                log?.write(Data((line + "\n").utf8))
                if line.hasPrefix("I: Retrieving") && line.contains("Release") || line.hasPrefix("I: Installing core")
                    || line.hasPrefix("I: Base system installed")
                {
                    progress("debootstrap: \(line.dropFirst(3))")
                }
            }
            guard r.status == 0 else {
                throw BootstrapError.command(CommandError(command: "debootstrap", status: r.status, output: r.combined + "\n(full log: \(logPath))"))
            }
            progress("configuring the root file system")
            try await configure(rootfs: tmp)
            try? fm.removeItem(atPath: dir)
            try fm.moveItem(atPath: tmp, toPath: dir)
            _ = fm.createFile(atPath: done, contents: Data())
            return dir
        } catch let e as BootstrapError {
            throw e
        } catch let e as CommandError {
            throw .command(e)
        } catch {
            throw .io("\(error)")
        }
    }

    /// Writes the recipe's files, enables and masks units, removes what must be unique per machine.
    func configure(rootfs r: String) async throws {
        let fm = FileManager.default
        func p(_ rel: String) -> String { (r as NSString).appendingPathComponent(rel) }
        for f in DebianRecipe.files {
            try fm.ensureDirectory((p(f.path) as NSString).deletingLastPathComponent)
            try? fm.removeItem(atPath: p(f.path))
            _ = fm.createFile(atPath: p(f.path), contents: Data(f.content.utf8), attributes: [.posixPermissions: f.mode])
        }
        try await ProcessRunner.check("chroot", [r, "systemctl", "enable"] + DebianRecipe.enabledUnits)
        try await ProcessRunner.check("chroot", [r, "systemctl", "mask"] + DebianRecipe.maskedUnits)
        try? fm.removeItem(atPath: p("etc/resolv.conf"))
        try fm.createSymbolicLink(atPath: p("etc/resolv.conf"), withDestinationPath: "/run/systemd/resolve/stub-resolv.conf")
        try scrub(rootfs: r)
    }

    /// Removes what must be unique per machine (regenerated at first boot) and what a boot does not need:
    /// after the bootstrap and again after an upgrade (openssh-server's postinst makes host keys).
    func scrub(rootfs r: String) throws {
        let fm = FileManager.default
        func p(_ rel: String) -> String { (r as NSString).appendingPathComponent(rel) }
        for f in (try? fm.contentsOfDirectory(atPath: p("etc/ssh"))) ?? [] where f.hasPrefix("ssh_host_") {
            try fm.removeItem(atPath: p("etc/ssh/\(f)"))
        }
        _ = fm.createFile(atPath: p("etc/machine-id"), contents: Data())
        try? fm.removeItem(atPath: p("var/lib/dbus/machine-id"))
        // No initramfs: the kernel mounts the NVMe root itself. Drop the generated ones and apt's downloads.
        for f in (try? fm.contentsOfDirectory(atPath: p("boot"))) ?? [] where f.hasPrefix("initrd.img") {
            try fm.removeItem(atPath: p("boot/\(f)"))
        }
        for link in ["initrd.img", "initrd.img.old"] { try? fm.removeItem(atPath: p(link)) }
        for f in (try? fm.contentsOfDirectory(atPath: p("var/cache/apt/archives"))) ?? [] where f.hasSuffix(".deb") {
            try fm.removeItem(atPath: p("var/cache/apt/archives/\(f)"))
        }
    }

    /// Stage 2: partition table, file systems and boot loader in a raw file.
    func makeDisk(rootfs: String, generation: HyperVGeneration, at out: String, work: String) async throws {
        let fm = FileManager.default
        _ = fm.createFile(atPath: out, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        try h.truncate(atOffset: UInt64(diskSizeMiB) << 20)
        try h.close()
        let rootStart: Int
        let table: String
        if generation == .v1 {
            rootStart = 2048
            table = "label: dos\nlabel-id: 0x\(DebianRecipe.mbrDiskSignature)\nstart=2048, type=83, bootable\n"
        } else {
            rootStart = 2048 + 65536
            table = """
                label: gpt
                start=2048, size=65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system"
                start=\(rootStart), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=\(DebianRecipe.gen2RootPartUUID), name="root"

                """
        }
        try await ProcessRunner.check("sfdisk", ["-q", out], input: Data(table.utf8))
        let dump = try await ProcessRunner.check("sfdisk", ["-d", out]).stdout
        guard
            let line = dump.split(separator: "\n").first(where: {
                $0.contains("start=") && $0.replacingOccurrences(of: " ", with: "").contains("start=\(rootStart),")
            }),
            let sizeField = line.split(separator: ",").first(where: { $0.contains("size=") }),
            let sectors = Int(sizeField.split(separator: "=").last!.trimmingCharacters(in: .whitespaces))
        else { throw BootstrapError.io("cannot read the root partition's size from sfdisk:\n\(dump)") }

        let rootImg = (work as NSString).appendingPathComponent("root.ext4")
        try await ProcessRunner.check(
            "mkfs.ext4",
            [
                "-q", "-F", "-L", "root", "-d", rootfs, "-E", "lazy_itable_init=1,lazy_journal_init=1",
                rootImg, "\(sectors / 2)k"
            ])
        try await ProcessRunner.check("dd", ["if=\(rootImg)", "of=\(out)", "bs=1M", "seek=\(rootStart / 2048)", "conv=notrunc,sparse", "status=none"])
        try? fm.removeItem(atPath: rootImg)

        let modules = ["part_msdos", "part_gpt", "ext2", "normal", "linux", "boot", "configfile", "echo", "test"]
        if generation == .v1 {
            let core = (work as NSString).appendingPathComponent("core.img")
            try await ProcessRunner.check("grub-mkimage", ["-O", "i386-pc", "-o", core, "-p", "(hd0,msdos1)/boot/grub", "biosdisk"] + modules)
            // boot.img's code goes in the MBR (before the partition table); core.img right after it, in the
            // gap before the first partition: boot.img loads sector 1 by default.
            try await ProcessRunner.check("dd", ["if=/usr/lib/grub/i386-pc/boot.img", "of=\(out)", "bs=440", "count=1", "conv=notrunc", "status=none"])
            try await ProcessRunner.check("dd", ["if=\(core)", "of=\(out)", "bs=512", "seek=1", "conv=notrunc", "status=none"])
        } else {
            let efi = (work as NSString).appendingPathComponent("BOOTX64.EFI")
            try await ProcessRunner.check("grub-mkimage", ["-O", "x86_64-efi", "-o", efi, "-p", "(hd0,gpt2)/boot/grub", "efi_gop"] + modules)
            let esp = (work as NSString).appendingPathComponent("esp.img")
            try await ProcessRunner.check("mkfs.vfat", ["-n", "EFI", "-C", esp, "32768"])
            try await ProcessRunner.check("mmd", ["-i", esp, "::/EFI", "::/EFI/BOOT"])
            try await ProcessRunner.check("mcopy", ["-i", esp, efi, "::/EFI/BOOT/BOOTX64.EFI"])
            try await ProcessRunner.check("dd", ["if=\(esp)", "of=\(out)", "bs=1M", "seek=1", "conv=notrunc", "status=none"])
        }
    }
}

extension JSONDecoder {
    static var iso: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}

extension JSONEncoder {
    static var iso: JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return e
    }
}

/// An exclusive advisory lock on a file (flock), polled so that waiting does not block a thread.
final class CacheLock: Sendable {
    let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    static func acquire(_ path: String, waiting: @Sendable (String) -> Void) async throws -> CacheLock {
        try FileManager.default.ensureDirectory((path as NSString).deletingLastPathComponent)
        let fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission) }
        var told = false
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if !told {
                waiting("waiting for another bootstrap using the same cache to finish")
                told = true
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        return CacheLock(fd: fd)
    }

    func release() {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
