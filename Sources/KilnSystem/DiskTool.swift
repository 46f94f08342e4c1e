import Crypto
import Foundation

/// Facts about a disk image, from `qemu-img info`.
public struct DiskInfo: Sendable, Hashable {
    public var format: String
    public var virtualSize: Int64
    public var actualSize: Int64
    public var backingFile: String?
}

/// Thin, typed wrappers around qemu-img, plus hashing.
public enum DiskTool {
    /// The format to pass to qemu-img for `path`. A fixed VHD has only a footer, which qemu-img probes as
    /// `raw`; a `conectix` cookie in the last sector means VHD (`vpc`).
    public static func detectFormat(_ path: String) async throws(CommandError) -> String {
        if let h = FileHandle(forReadingAtPath: path) {
            defer { try? h.close() }
            if let end = try? h.seekToEnd(), end >= 512 {
                try? h.seek(toOffset: end - 512)
                if let footer = try? h.read(upToCount: 8), footer == Data("conectix".utf8) { return "vpc" }
            }
        }
        return try await info(path).format
    }

    public static func info(_ path: String, format: String? = nil) async throws(CommandError) -> DiskInfo {
        var args = ["info", "--output=json", "-U"]
        if let format { args += ["-f", format] }
        args.append(path)
        let out = try await ProcessRunner.check("qemu-img", args, timeout: .seconds(60))
        guard let i = try? JSONDecoder().decode(QemuImgInfo.self, from: Data(out.stdout.utf8)) else {
            throw CommandError(command: "qemu-img info \(path)", status: 0, output: out.stdout, reason: "unexpected output")
        }
        return DiskInfo(format: i.format, virtualSize: i.virtualSize, actualSize: i.actualSize ?? 0, backingFile: i.backingFilename)
    }

    /// The fields of `qemu-img info --output=json` Kiln reads.
    struct QemuImgInfo: Decodable {
        var format: String
        var virtualSize: Int64
        var actualSize: Int64?
        var backingFilename: String?
        enum CodingKeys: String, CodingKey {
            case format, virtualSize = "virtual-size", actualSize = "actual-size", backingFilename = "backing-filename"
        }
    }

    /// Converts between formats; the output is sparse.
    public static func convert(_ source: String, from sourceFormat: String, to destination: String, format: String, options: [String] = [])
        async throws(CommandError)
    {
        var args = ["convert", "-f", sourceFormat, "-O", format]
        if !options.isEmpty { args += ["-o", options.joined(separator: ",")] }
        try await ProcessRunner.check("qemu-img", args + [source, destination])
    }

    /// A copy-on-write qcow2 overlay on `base`, grown to `size` bytes when given.
    public static func createOverlay(base: String, baseFormat: String, at path: String, size: Int64? = nil) async throws(CommandError) {
        var args = ["create", "-q", "-f", "qcow2", "-b", base, "-F", baseFormat, path]
        if let size { args.append(String(size)) }
        try await ProcessRunner.check("qemu-img", args)
    }

    /// Whether two images hold the same guest-visible content.
    public static func sameContent(_ a: String, _ aFormat: String, _ b: String, _ bFormat: String) async throws(CommandError) -> Bool {
        let r = try await ProcessRunner.run("qemu-img", ["compare", "-q", "-f", aFormat, "-F", bFormat, a, b])
        switch r.status {
        case 0: return true
        case 1: return false
        default: throw CommandError(command: "qemu-img compare", status: r.status, output: r.combined)
        }
    }

    /// Hex SHA-256 of a file, streamed.
    public static func sha256(of path: String) throws -> String {
        guard let h = FileHandle(forReadingAtPath: path) else { throw CocoaError(.fileReadNoSuchFile) }
        defer { try? h.close() }
        var hasher = SHA256()
        while let chunk = try h.read(upToCount: 4 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Places `source` at `destination` without using more disk when possible: a hard link on the same
    /// filesystem, else a copy.
    public static func linkOrCopy(_ source: String, to destination: String) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: destination) { try fm.removeItem(atPath: destination) }
        do {
            try fm.linkItem(atPath: source, toPath: destination)
        } catch {
            try fm.copyItem(atPath: source, toPath: destination)
        }
    }

    /// The allocated size of a file on disk (sparse files count only their data).
    public static func allocatedSize(_ path: String) -> Int64 {
        var st = stat()
        guard stat(path, &st) == 0 else { return 0 }
        return Int64(st.st_blocks) * 512
    }
}
