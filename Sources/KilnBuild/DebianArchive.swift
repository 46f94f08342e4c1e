import Crypto
import Foundation

/// One APT source in one-line form: `deb [opts] URI SUITE [COMPONENT…]`, a flat repository when SUITE ends
/// in `/` (`deb [trusted=yes] file:/srv/repo ./`).
public struct AptSource: Sendable, Hashable, Codable, CustomStringConvertible {
    public var options: [String]
    public var uri: String
    public var suite: String
    public var components: [String]

    public init(options: [String] = [], uri: String, suite: String, components: [String] = ["main"]) {
        self.options = options
        self.uri = uri
        self.suite = suite
        self.components = suite.hasSuffix("/") ? [] : components
    }

    public var isFlat: Bool { suite.hasSuffix("/") }

    /// The line as it goes into `sources.list`.
    public var description: String {
        (["deb"] + (options.isEmpty ? [] : ["[\(options.joined(separator: " "))]"]) + [uri, suite] + components).joined(separator: " ")
    }

    /// The same source at another URI (a `file:` repository bind-mounted into the chroot).
    public func relocated(to uri: String) -> AptSource {
        var copy = self
        copy.uri = uri
        return copy
    }

    /// Parses one line; the reason is a sentence without the line (the caller names where the line came from).
    public static func parse(_ line: String) -> Result<AptSource, ArchiveError> {
        var rest = line.trimmingCharacters(in: .whitespaces)
        guard rest.hasPrefix("deb ") else { return .failure(.badSource(line, "it must start with 'deb ' (one-line APT format)")) }
        rest = String(rest.dropFirst(4)).trimmingCharacters(in: .whitespaces)
        var options: [String] = []
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return .failure(.badSource(line, "the '[' of its options is not closed")) }
            options = rest[rest.index(after: rest.startIndex)..<close].split(separator: " ").map(String.init)
            rest = String(rest[rest.index(after: close)...])
        }
        let words = rest.split(separator: " ").map(String.init)
        guard words.count >= 2 else { return .failure(.badSource(line, "it needs a URI and a suite")) }
        let uri = words[0]
        guard let scheme = uri.split(separator: ":").first.map(String.init), ["http", "https", "file"].contains(scheme) else {
            return .failure(.badSource(line, "its URI must be http:, https: or file:"))
        }
        if scheme == "file", !uri.dropFirst(5).hasPrefix("/") { return .failure(.badSource(line, "a file: URI must be an absolute path")) }
        let suite = words[1]
        guard suite.allSatisfy({ $0.isLetter || $0.isNumber || "-_./".contains($0) }), !suite.contains("..") else {
            return .failure(.badSource(line, "suite '\(suite)' has characters a suite cannot have"))
        }
        let components = Array(words.dropFirst(2))
        if suite.hasSuffix("/") && !components.isEmpty { return .failure(.badSource(line, "a flat repository ('\(suite)') takes no components")) }
        if !suite.hasSuffix("/") && components.isEmpty { return .failure(.badSource(line, "it needs at least one component after the suite")) }
        return .success(AptSource(options: options, uri: uri, suite: suite, components: components))
    }

    /// Where this source's release file lives, relative to the URI (InRelease first, then Release).
    var releasePaths: [String] {
        let base = isFlat ? (suite == "./" ? "" : suite) : "dists/\(suite)/"
        return [base + "InRelease", base + "Release"]
    }

    /// A flat repository without a Release file is known by its package list.
    var flatPackagesPath: String { (suite == "./" ? "" : suite) + "Packages" }
}

/// What a Release (or InRelease) file says about the package lists Kiln installs from: the SHA256 of every
/// amd64 and all-architecture `Packages` list. The signature and the `Date:` are left out, so that re-signing
/// the same lists (Debian does so daily for bookworm-security) is not a change.
public struct ReleaseIndex: Sendable, Equatable {
    public var packageLists: [String: String]

    public static func parse(_ text: String) -> ReleaseIndex {
        var lists: [String: String] = [:]
        var inSHA256 = false
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if !line.hasPrefix(" ") {
                inSHA256 = line.hasPrefix("SHA256:")
                continue
            }
            guard inSHA256 else { continue }
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count == 3 else { continue }
            let path = fields[2]
            let name = (path as NSString).lastPathComponent
            let archOK = path.contains("binary-amd64/") || path.contains("binary-all/") || !path.contains("/")
            if archOK, name == "Packages" || name.hasPrefix("Packages.") { lists[path] = fields[0] }
        }
        return ReleaseIndex(packageLists: lists)
    }

    /// One line per list, sorted: the part of the fingerprint this file contributes.
    var fingerprint: String { packageLists.keys.sorted().map { "\($0)=\(packageLists[$0]!)" }.joined(separator: ",") }
}

/// Reads files of an APT repository over http(s). `file:` repositories are read directly.
public protocol ArchiveFetching: Sendable {
    /// The body of `url`, or nil when the server answers 404.
    func fetch(_ url: String) async throws(ArchiveError) -> Data?
}

public enum ArchiveError: Error, Sendable, Equatable, CustomStringConvertible {
    case badSource(String, String)
    case unreachable(String, String)
    case noRelease(String)

    public var description: String {
        switch self {
        case .badSource(let line, let why): return "APT source '\(line)': \(why)"
        case .unreachable(let url, let why): return "cannot read \(url): \(why)"
        case .noRelease(let source): return "\(source) has neither InRelease nor Release (nor, for a flat repository, Packages)"
        }
    }
}

/// The state of the archive as far as an upgrade could see it: one fingerprint per source, and their digest.
public struct ArchiveState: Sendable, Codable, Equatable {
    public struct Source: Sendable, Codable, Equatable {
        public var line: String
        public var fingerprint: String
    }
    public var sources: [Source]

    public var digest: String {
        DebianBootstrap.sha256Hex(sources.map { "\($0.line)\n\($0.fingerprint)" }.joined(separator: "\n\n"))
    }

    /// Reads each source's release file (or, for a flat repository without one, its package list).
    public static func probe(_ sources: [AptSource], fetcher: (any ArchiveFetching)?) async throws(ArchiveError) -> ArchiveState {
        var out: [Source] = []
        for source in sources {
            out.append(Source(line: source.description, fingerprint: try await fingerprint(of: source, fetcher: fetcher)))
        }
        return ArchiveState(sources: out)
    }

    static func fingerprint(of source: AptSource, fetcher: (any ArchiveFetching)?) async throws(ArchiveError) -> String {
        for path in source.releasePaths {
            if let data = try await read(source, path, fetcher: fetcher) {
                return ReleaseIndex.parse(String(decoding: data, as: UTF8.self)).fingerprint
            }
        }
        if source.isFlat, let data = try await read(source, source.flatPackagesPath, fetcher: fetcher) {
            return "Packages=" + SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        }
        throw .noRelease(source.description)
    }

    static func read(_ source: AptSource, _ path: String, fetcher: (any ArchiveFetching)?) async throws(ArchiveError) -> Data? {
        let base = source.uri.hasSuffix("/") ? source.uri : source.uri + "/"
        if base.hasPrefix("file:") {
            let file = String(base.dropFirst(5)) + path
            return FileManager.default.contents(atPath: file)
        }
        guard let fetcher else { throw .unreachable(base + path, "no HTTP client was given") }
        return try await fetcher.fetch(base + path)
    }
}
