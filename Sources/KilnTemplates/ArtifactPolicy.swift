import Foundation

/// What a template's artifact references (`scriptUri`, `sourceUri`, a VHD `uri`) may make Kiln read, reach or
/// write on the build host. A template's author is whoever can push to the repository or call the API, not
/// whoever runs Kiln (often root): by default such a template reaches no host file outside its repository and
/// no internal network address. The configuration's `artifacts` section widens that; the local CLI may trust
/// the invoking user (`kiln template create --trust-local-files`).
///
/// The checks are made twice: when the template is decoded (so `kiln plan`/`validate` report the JSON path and
/// line, and nothing is read), and again when an artifact is fetched, on the real file (symlinks resolved) and
/// on every resolved address of every redirect.
public struct ArtifactPolicy: Sendable, Hashable {
    /// Host files a `file://` reference may name.
    public enum LocalFiles: Sendable, Hashable {
        /// Files under these absolute directories (after symlinks are resolved). Empty: none.
        case under([String])
        /// Any file the user running Kiln can read: a template written by that user, on the command line.
        case anyReadable
    }

    public var localFiles: LocalFiles
    /// Directories a local VHD distribution target may write into (the staging area is always allowed).
    public var vhdRoots: [String]
    /// Internal addresses (loopback, private, link-local, unique-local) a URL may reach anyway: CIDR blocks
    /// and host names (`mirror.internal`, `*.corp.example`).
    public var allowedNetworks: [AddressRange]
    public var allowedHostNames: [String]

    public init(localFiles: LocalFiles = .under([]), vhdRoots: [String] = [], allowedNetworks: [AddressRange] = [], allowedHostNames: [String] = []) {
        self.localFiles = localFiles
        self.vhdRoots = vhdRoots
        self.allowedNetworks = allowedNetworks
        self.allowedHostNames = allowedHostNames.map { $0.lowercased() }
    }

    /// The directories `file://` references may name (empty when none, or when any readable file may be).
    public var fileRoots: [String] {
        if case .under(let roots) = localFiles { return roots }
        return []
    }

    /// No host files, no internal addresses: for templates from git or the API when nothing is configured.
    public static let untrusted = ArtifactPolicy()

    /// This policy, also admitting any file the invoking user can read.
    public var trustingLocalFiles: ArtifactPolicy {
        var p = self
        p.localFiles = .anyReadable
        return p
    }

    // MARK: Host files

    /// Why the host file `path` (absolute) may not be read, or nil. Symlinks are resolved first when the file
    /// exists, so a link under an allowed root that points elsewhere is judged by where it points.
    public func fileProblem(_ path: String) -> String? {
        guard case .under(let roots) = localFiles else { return nil }
        guard !roots.isEmpty else {
            return
                "host files are not allowed for this template (artifacts.allowedFileRoots is empty); put the file in the repository, or list its directory in artifacts.allowedFileRoots"
        }
        let real = Self.realPath(path)
        if roots.contains(where: { Self.isInside(real, Self.realPath($0)) }) { return nil }
        let shown = real == Self.lexical(path) ? path : "\(path) (which resolves to \(real))"
        return "\(shown) is outside artifacts.allowedFileRoots (\(roots.joined(separator: ", ")))"
    }

    /// Why a VHD may not be written to `path` (absolute), or nil.
    public func vhdProblem(_ path: String) -> String? {
        if case .anyReadable = localFiles { return nil }
        let parent = Self.realPath((path as NSString).deletingLastPathComponent)
        if vhdRoots.contains(where: { Self.isInside(parent, Self.realPath($0)) }) { return nil }
        if vhdRoots.isEmpty {
            return
                "writing a VHD to a host path is not allowed for this template (distribution.allowedVhdRoots is empty); leave uri out to keep the VHD in the staging area"
        }
        return "\(path) is outside distribution.allowedVhdRoots (\(vhdRoots.joined(separator: ", ")))"
    }

    // MARK: Network

    /// Why a URL's host may not be reached, judged on the name alone (before any DNS lookup), or nil. A host
    /// written as an address is judged now; a name is admitted here and its addresses judged when fetched.
    public func hostProblem(_ host: String) -> String? {
        if admitsName(host) { return nil }
        if let address = IPAddress(host) { return addressProblem(address, host: host) }
        let lower = host.lowercased()
        if lower == "localhost" || lower.hasSuffix(".localhost") {
            return "\(host) is the build host itself; list it in artifacts.allowedHosts to allow it"
        }
        return nil
    }

    /// Why one resolved address of `host` may not be reached, or nil.
    public func addressProblem(_ address: IPAddress, host: String) -> String? {
        let scope = address.scope
        guard scope.isInternal, !allowedNetworks.contains(where: { $0.contains(address) }), !admitsName(host) else { return nil }
        let via = host == address.description || IPAddress(host) != nil ? "" : " (\(host) resolves to it)"
        return
            "\(address)\(via) is an internal address (\(scope.rawValue)); Kiln does not fetch from internal addresses unless artifacts.allowedHosts lists them"
    }

    /// A configured host name matches (`*.corp.example` matches any name under corp.example).
    public func admitsName(_ host: String) -> Bool {
        let h = host.lowercased()
        return allowedHostNames.contains { rule in
            rule.hasPrefix("*.") ? h.hasSuffix(rule.dropFirst()) : h == rule
        }
    }

    // MARK: Paths

    /// `path` with `.`/`..` removed and symlinks resolved as far as the path exists.
    static func realPath(_ path: String) -> String {
        guard let r = realpath(path, nil) else {
            // Not there (yet): resolve the parent, so a link to another directory still counts.
            let parent = (path as NSString).deletingLastPathComponent
            guard parent != path, !parent.isEmpty else { return lexical(path) }
            return (realPath(parent) as NSString).appendingPathComponent((path as NSString).lastPathComponent)
        }
        defer { free(r) }
        return String(cString: r)
    }

    static func lexical(_ path: String) -> String { "/" + (RepositoryPath.normalized(path) ?? "") }

    static func isInside(_ path: String, _ root: String) -> Bool {
        let r = root.hasSuffix("/") ? String(root.dropLast()) : root
        return path == r || path.hasPrefix(r + "/") || r.isEmpty
    }
}
