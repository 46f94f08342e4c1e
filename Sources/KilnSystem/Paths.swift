import Foundation

/// Where Kiln keeps its state (DESIGN.md, "Data directory").
///
/// `<data>/kiln.db`, `<data>/images/` (catalog), `<data>/staging/`, `<data>/regions/`, `<data>/git/`,
/// and a cache (`<data>/cache/` unless `KILN_CACHE_DIR` points elsewhere, as CI does so that a
/// bootstrapped base image survives between runs).
public struct KilnPaths: Sendable, Hashable {
    public var dataDir: String
    public var cacheDir: String

    public init(dataDir: String, cacheDir: String? = nil) {
        self.dataDir = (dataDir as NSString).standardizingPath
        self.cacheDir = cacheDir.map { ($0 as NSString).standardizingPath } ?? (self.dataDir as NSString).appendingPathComponent("cache")
    }

    /// `--data-dir`, else `KILN_DATA_DIR`, else `/var/lib/kiln` for root and `~/.local/share/kiln` otherwise.
    public static func resolve(dataDir: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> KilnPaths {
        let data: String
        if let dataDir, !dataDir.isEmpty {
            data = dataDir
        } else if let env = environment["KILN_DATA_DIR"], !env.isEmpty {
            data = env
        } else if geteuid() == 0 {
            data = "/var/lib/kiln"
        } else {
            data = (NSHomeDirectory() as NSString).appendingPathComponent(".local/share/kiln")
        }
        let absolute = data.hasPrefix("/") ? data : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(data)
        let cache = environment["KILN_CACHE_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        return KilnPaths(dataDir: absolute, cacheDir: cache)
    }

    public var database: String { sub("kiln.db") }
    public var images: String { sub("images") }
    public var staging: String { sub("staging") }
    public var regions: String { sub("regions") }
    public var vms: String { sub("vms") }
    /// Images runs captured (`run-images/<run>/osdisk.qcow2`): outside staging, so a template's recreate does
    /// not take the image a rerun with the same inputs may reuse.
    public var runImages: String { sub("run-images") }
    public func runImage(_ runId: String) -> String { (runImages as NSString).appendingPathComponent("\(runId)/osdisk.qcow2") }

    /// An absolute path for a path stored relative to the data directory.
    public func absolute(_ relative: String) -> String {
        relative.hasPrefix("/") ? relative : sub(relative)
    }

    /// The path relative to the data directory, when it is inside it.
    public func relative(_ absolute: String) -> String {
        let prefix = dataDir.hasSuffix("/") ? dataDir : dataDir + "/"
        return absolute.hasPrefix(prefix) ? String(absolute.dropFirst(prefix.count)) : absolute
    }

    private func sub(_ name: String) -> String { (dataDir as NSString).appendingPathComponent(name) }
}

extension FileManager {
    /// Creates a directory and its parents; no error when it exists.
    public func ensureDirectory(_ path: String) throws {
        try createDirectory(atPath: path, withIntermediateDirectories: true)
    }
}
