import Foundation
import KilnSystem

/// Putting image files where they belong without wasting disk.
public enum DiskPlacement {
    /// A region's own copy of an image: a reflink where the filesystem can (btrfs, XFS), else a sparse copy.
    /// Written under a temporary name and renamed, so a reader never sees half a disk.
    public static func copy(_ source: String, to destination: String) async throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let tmp = destination + ".partial"
        try? fm.removeItem(atPath: tmp)
        try await ProcessRunner.check("cp", ["--reflink=auto", "--sparse=always", source, tmp], timeout: .seconds(3600))
        if fm.fileExists(atPath: destination) { try fm.removeItem(atPath: destination) }
        try fm.moveItem(atPath: tmp, toPath: destination)
    }

    /// Places an immutable image at `destination`: a hard link when both are on one filesystem (regions
    /// mapped to the same disk share blocks; nothing ever writes to a placed image — VMs boot from overlays —
    /// and a replaced image is a new file renamed into place, so a link never sees a change), else a reflink
    /// or sparse copy (a region on another disk gets its own copy). The result is made read-only.
    /// Returns how: "hardlink" or "copy".
    @discardableResult
    public static func place(_ source: String, at destination: String) async throws -> String {
        let fm = FileManager.default
        try fm.createDirectory(atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let tmp = destination + ".partial"
        try? fm.removeItem(atPath: tmp)
        var how = "hardlink"
        do {
            try fm.linkItem(atPath: source, toPath: tmp)
        } catch {
            how = "copy"
            try await ProcessRunner.check("cp", ["--reflink=auto", "--sparse=always", source, tmp], timeout: .seconds(3600))
        }
        if how == "copy" { chmod(tmp, 0o444) } else { chmod(source, 0o444) }
        if fm.fileExists(atPath: destination) { try fm.removeItem(atPath: destination) }
        try fm.moveItem(atPath: tmp, toPath: destination)
        return how
    }

    /// A further replica inside a region: a hard link (no extra disk), else a reflink or sparse copy.
    public static func replica(of primary: String, at destination: String) async throws -> String {
        let fm = FileManager.default
        if fm.fileExists(atPath: destination) { try fm.removeItem(atPath: destination) }
        do {
            try fm.linkItem(atPath: primary, toPath: destination)
            return "hardlink"
        } catch {
            try await copy(primary, to: destination)
            return "copy"
        }
    }

    /// The inode of a file (tests and `show` use it to prove replicas share their blocks).
    public static func inode(_ path: String) -> UInt64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return UInt64(st.st_ino)
    }
}

/// Azure's VHD: fixed, with a virtual size that is a whole number of MiB.
public enum VHDExport {
    static let mib: Int64 = 1 << 20

    /// Converts a qcow2 image into a fixed VHD at `destination` in one qemu-img pass. When the virtual size is
    /// not a whole MiB, a throwaway overlay grown to the next MiB is converted instead (growing an overlay
    /// is metadata only). `force_size` keeps qemu-img from rounding to CHS geometry.
    public static func export(_ source: String, virtualSize known: Int64? = nil, to destination: String, workDirectory: String) async throws -> (
        virtualSize: Int64, seconds: Double
    ) {
        let start = ContinuousClock.now
        let fm = FileManager.default
        try fm.createDirectory(atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let virtualSize: Int64
        if let known { virtualSize = known } else { virtualSize = try await DiskTool.info(source, format: "qcow2").virtualSize }
        let rounded = (virtualSize + mib - 1) / mib * mib
        var input = source
        let overlay = (workDirectory as NSString).appendingPathComponent("vhd-\(UUID().uuidString.prefix(8)).qcow2")
        defer { try? fm.removeItem(atPath: overlay) }
        if rounded != virtualSize {
            try fm.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
            try await DiskTool.createOverlay(base: source, baseFormat: "qcow2", at: overlay, size: rounded)
            input = overlay
        }
        let tmp = destination + ".partial"
        try? fm.removeItem(atPath: tmp)
        try await DiskTool.convert(input, from: "qcow2", to: tmp, format: "vpc", options: ["subformat=fixed", "force_size=on"])
        if fm.fileExists(atPath: destination) { try fm.removeItem(atPath: destination) }
        try fm.moveItem(atPath: tmp, toPath: destination)
        let d = ContinuousClock.now - start
        return (rounded, d.inSeconds)
    }
}
