import Foundation
import KilnTemplates

/// Where a template's relative artifact paths (`scripts/harden.sh`, `../scripts/web.sh`) are read from: a
/// directory on disk for a template created from a file, or the tree of a commit for a template from a GitOps
/// repository. Both resolve a reference with `RepositoryPath` and never return a file outside the repository.
public protocol RelativeArtifactSource: Sendable {
    /// The file's bytes, or nil when there is no such file. `reference` is the relative path as the template
    /// writes it.
    func read(_ reference: String) async throws(FetchError) -> Data?
    /// For messages: where relative paths are looked up.
    var description: String { get }
}

/// A template file on disk and the repository around it (the directory holding the nearest `kiln.yaml`, else
/// the template's own directory). Symlinks are followed only while they stay inside the repository.
public struct DirectoryArtifactSource: RelativeArtifactSource {
    /// The repository root, absolute, symlinks resolved.
    public let root: String
    /// The template file's directory relative to `root` ("" when it is the root).
    public let templateDirectory: String
    public var maxBytes = 256 << 20

    /// - Parameters:
    ///   - templateFile: the template file's absolute path.
    ///   - repositoryRoot: the directory that bounds relative paths (nil: the template's directory).
    public init(templateFile: String, repositoryRoot: String?) {
        let dir = Self.resolved((templateFile as NSString).deletingLastPathComponent)
        let root = repositoryRoot.map(Self.resolved) ?? dir
        self.root = root
        templateDirectory = dir == root ? "" : (dir.hasPrefix(root + "/") ? String(dir.dropFirst(root.count + 1)) : "")
    }

    public func read(_ reference: String) async throws(FetchError) -> Data? {
        for candidate in RepositoryPath.candidates(reference, templateDirectory: templateDirectory) {
            let full = (root as NSString).appendingPathComponent(candidate)
            guard FileManager.default.fileExists(atPath: full) else { continue }
            let real = Self.resolved(full)
            guard real == root || real.hasPrefix(root == "/" ? "/" : root + "/") else {
                throw FetchError("\(reference) is a symbolic link to \(real), outside the repository \(root)")
            }
            return try LocalFile.read(real, shown: candidate, maxBytes: maxBytes)
        }
        return nil
    }

    public var description: String { templateDirectory.isEmpty ? root : "\(root)/\(templateDirectory) or \(root)" }

    static func resolved(_ path: String) -> String {
        guard let r = realpath(path, nil) else { return URL(fileURLWithPath: path).standardizedFileURL.path }
        defer { free(r) }
        return String(cString: r)
    }
}

/// Reads one host file for staging: a regular file (not a device or a FIFO, which could block or never end),
/// no bigger than the artifact limit.
enum LocalFile {
    static func read(_ path: String, shown: String, maxBytes: Int) throws(FetchError) -> Data {
        var st = stat()
        guard stat(path, &st) == 0 else { throw FetchError("\(shown) does not exist") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FetchError("\(shown) is not a regular file") }
        guard Int(st.st_size) <= maxBytes else { throw FetchError("\(shown) is \(Int(st.st_size) >> 20) MiB; artifacts are limited to \(maxBytes >> 20) MiB") }
        guard let d = FileManager.default.contents(atPath: path) else { throw FetchError("cannot read \(shown)") }
        return d
    }
}
