import Foundation
import KilnSystem

/// A NoCloud seed (cloud-init's convention): a small FAT volume labelled `CIDATA` holding `meta-data` and
/// `user-data`. Kiln's images read it with their first-boot step; images with cloud-init read it too.
/// Built with mkfs.vfat and mtools: no mount, no root needed.
public struct NoCloudSeed: Sendable, Hashable {
    public var instanceId: String
    public var hostname: String
    public var user: String
    public var authorizedKeys: [String]

    public init(instanceId: String, hostname: String, user: String, authorizedKeys: [String]) {
        self.instanceId = instanceId
        self.hostname = hostname
        self.user = user
        self.authorizedKeys = authorizedKeys
    }

    public var metaData: String {
        "instance-id: \(instanceId)\nlocal-hostname: \(hostname)\n"
    }

    /// `#cloud-config` with one user, passwordless sudo (as AIB's build user has) and the keys.
    public var userData: String {
        var s =
            "#cloud-config\nusers:\n  - name: \(user)\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    shell: /bin/bash\n    lock_passwd: true\n    ssh_authorized_keys:\n"
        for k in authorizedKeys { s += "      - \(k)\n" }
        return s
    }

    /// Writes the seed image to `path`.
    public func write(to path: String) async throws(CommandError) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-seed-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            try FileManager.default.ensureDirectory(dir)
            try metaData.write(toFile: (dir as NSString).appendingPathComponent("meta-data"), atomically: true, encoding: .utf8)
            try userData.write(toFile: (dir as NSString).appendingPathComponent("user-data"), atomically: true, encoding: .utf8)
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        } catch {
            throw CommandError(command: "write seed", status: -1, output: "", reason: "\(error)")
        }
        try await ProcessRunner.check("mkfs.vfat", ["-n", "CIDATA", "-C", path, "1024"])
        try await ProcessRunner.check(
            "mcopy",
            [
                "-i", path, (dir as NSString).appendingPathComponent("meta-data"),
                (dir as NSString).appendingPathComponent("user-data"), "::"
            ])
    }
}
