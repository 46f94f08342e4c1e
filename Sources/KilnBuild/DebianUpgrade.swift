import Foundation
import KilnSystem

/// The upgrade stage of a refresh: the cached debootstrap root file system, copied and brought up to date
/// with `apt-get dist-upgrade` against the archive as it is now (bookworm, bookworm-updates,
/// bookworm-security and any extra sources), then scrubbed like a fresh bootstrap.
///
/// It always starts from the debootstrap, not from the previous upgrade, so that its result depends only on
/// the recipe and the archive: two machines refreshing against the same archive install the same packages.
/// The result is kept per source set (`upgraded-<upgradeKey>`) with the archive state it was made against,
/// so a refresh whose archive has not changed reuses it without running apt.
extension DebianBootstrap {
    /// What an upgraded root file system was made from and what it holds.
    struct UpgradeRecord: Codable, Sendable {
        var builtAt: Date
        var archive: ArchiveState
        var archiveDigest: String
        var packageDigest: String
        var installed: [String]
    }

    /// Bumped when the upgrade steps change what they produce.
    static let upgradeRevision = "upgrade-r1"

    public func upgradeKey(_ sources: DebianSources) -> String {
        let lines = sources.all.map(\.description) + ["include " + sources.include.joined(separator: ",")]
        return String(Self.sha256Hex(([rootfsKey, Self.upgradeRevision] + lines).joined(separator: "\n")).prefix(16))
    }

    func upgradeDir(_ key: String) -> String { (baseDir as NSString).appendingPathComponent("upgraded-\(key)") }

    /// The upgraded root file system for `sources` at `archive`, and whether apt ran for it.
    func upgradedRootfs(sources: DebianSources, archive: ArchiveState) async throws(BootstrapError) -> (dir: String, record: UpgradeRecord, ran: Bool) {
        let key = upgradeKey(sources)
        let dir = upgradeDir(key)
        let recordPath = dir + ".json"
        let fm = FileManager.default
        let previous = fm.contents(atPath: recordPath).flatMap { try? JSONDecoder.iso.decode(UpgradeRecord.self, from: $0) }
        if let previous, previous.archiveDigest == archive.digest, fm.fileExists(atPath: dir) {
            progress("the archive has not changed since the upgrade of \(ISO8601DateFormatter().string(from: previous.builtAt)); reusing it")
            return (dir, previous, false)
        }
        let base = try await buildRootfs(force: false)
        let tmp = dir + ".tmp"
        do {
            try? fm.removeItem(atPath: tmp)
            progress("upgrading a copy of the root file system \(rootfsKey) (apt-get dist-upgrade)")
            try await ProcessRunner.check("cp", ["-a", "--reflink=auto", base, tmp], timeout: .seconds(600))
            try await runUpgrade(in: tmp, sources: sources, logName: "upgrade-\(key).log")
            try scrub(rootfs: tmp)
            let installed = try await Self.installedPackages(rootfs: tmp)
            let record = UpgradeRecord(
                builtAt: Date(), archive: archive, archiveDigest: archive.digest, packageDigest: Self.sha256Hex(installed.joined(separator: "\n")),
                installed: installed)
            try? fm.removeItem(atPath: dir)
            try fm.moveItem(atPath: tmp, toPath: dir)
            try JSONEncoder.iso.encode(record).write(to: URL(fileURLWithPath: recordPath))
            return (dir, record, true)
        } catch let e as BootstrapError {
            try? fm.removeItem(atPath: tmp)
            throw e
        } catch let e as CommandError {
            try? fm.removeItem(atPath: tmp)
            throw .command(e)
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw .io("\(error)")
        }
    }

    /// apt in a chroot inside a private mount namespace: /proc, /dev, /sys, a tmpfs /run (with the host's
    /// resolver as the stub systemd-resolved would serve) and the `file:` repositories, read-only, all vanish
    /// with the process, whatever happens to it. Services are not started (`policy-rc.d` 101).
    func runUpgrade(in root: String, sources: DebianSources, logName: String) async throws {
        let fm = FileManager.default
        var binds: [(host: String, inside: String)] = []
        var lines: [String] = []
        for source in sources.all {
            if source.uri.hasPrefix("file:") {
                let inside = "/run/kiln-sources/\(binds.count)"
                binds.append((String(source.uri.dropFirst(5)), inside))
                lines.append(source.relocated(to: "file:" + inside).description)
            } else {
                lines.append(source.description)
            }
        }
        let aptSources = (root as NSString).appendingPathComponent("etc/apt/sources.list")
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: aptSources))
        let policy = (root as NSString).appendingPathComponent("usr/sbin/policy-rc.d")
        _ = fm.createFile(atPath: policy, contents: Data("#!/bin/sh\nexit 101\n".utf8), attributes: [.posixPermissions: 0o755])

        let apt = "chroot \"$R\" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 apt-get -q -y -o APT::Install-Recommends=false"
        let confold = "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
        var script = """
            set -eu
            mount --make-rprivate /
            mount -t proc proc "$R/proc"
            mount --rbind /dev "$R/dev"
            mount -t sysfs sysfs "$R/sys"
            mount -t tmpfs tmpfs "$R/run"
            mkdir -p "$R/run/systemd/resolve"
            cp /etc/resolv.conf "$R/run/systemd/resolve/stub-resolv.conf"

            """
        for (i, bind) in binds.enumerated() {
            script += "mkdir -p \"$R\(bind.inside)\"\nmount --bind \"$B\(i)\" \"$R\(bind.inside)\"\nmount -o remount,bind,ro \"$R\(bind.inside)\"\n"
        }
        script += """
            \(apt) update
            \(apt) \(confold) dist-upgrade
            \(sources.include.isEmpty ? "" : "\(apt) \(confold) install \(sources.include.joined(separator: " "))")
            \(apt) autoremove --purge
            newest=$(ls "$R"/boot/vmlinuz-* | sed 's|.*/vmlinuz-||' | sort -V | tail -n 1)
            old=$(chroot "$R" dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n' 'linux-image-[0-9]*' | awk '$1 == "ii" {print $2}' | grep -v -x "linux-image-$newest" || true)
            if [ -n "$old" ]; then \(apt) purge $old; fi
            \(apt) clean

            """
        var env = ProcessInfo.processInfo.environment
        env["R"] = root
        for (i, bind) in binds.enumerated() { env["B\(i)"] = bind.host }
        let logPath = (baseDir as NSString).appendingPathComponent(logName)
        _ = fm.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)
        defer { try? log?.close() }
        let progress = self.progress
        let r = try await ProcessRunner.run("unshare", ["--mount", "--", "sh", "-c", script], environment: env, timeout: .seconds(3600)) { line in
            log?.write(Data((line + "\n").utf8))
            if line.hasPrefix("Setting up linux-image") || line.hasPrefix("Unpacking") && line.contains("kiln") || line.hasSuffix("upgraded.")
                || line.contains(" newly installed,")
            {
                progress("apt: \(line)")
            }
        }
        try? fm.removeItem(atPath: policy)
        // The image keeps Debian's own sources, and no package list of a repository it cannot reach.
        try Data(sources.imageSourcesList.utf8).write(to: URL(fileURLWithPath: aptSources))
        let lists = (root as NSString).appendingPathComponent("var/lib/apt/lists")
        for f in (try? fm.contentsOfDirectory(atPath: lists)) ?? [] where f.hasPrefix("_run_kiln-sources_") {
            try? fm.removeItem(atPath: (lists as NSString).appendingPathComponent(f))
        }
        guard r.status == 0 else {
            throw CommandError(
                command: "apt-get dist-upgrade (in a chroot)", status: r.status, output: String(r.combined.suffix(4000)) + "\n(full log: \(logPath))")
        }
    }

    /// `name version architecture` of every installed package, sorted: what the package digest is made of.
    static func installedPackages(rootfs: String) async throws -> [String] {
        let admin = (rootfs as NSString).appendingPathComponent("var/lib/dpkg")
        let out = try await ProcessRunner.check(
            "dpkg-query", ["--admindir=\(admin)", "-W", "-f", "${db:Status-Abbrev} ${Package} ${Version} ${Architecture}\n"]
        ).stdout
        return out.split(separator: "\n").filter { $0.hasPrefix("ii ") }.map { $0.dropFirst(3).trimmingCharacters(in: .whitespaces) }.sorted()
    }
}
