/// Where a refresh of the Debian 12 base takes its packages from: Debian's three bookworm suites (the
/// release, its updates and its security archive), any extra repositories (a local mirror of in-house
/// packages, a pinned test repository) and extra packages to install from them.
///
/// The image keeps only Debian's three lines in `/etc/apt/sources.list`: extra sources are for the build,
/// so that a `file:` repository on the build host is never a source the guest cannot reach.
public struct DebianSources: Sendable, Equatable {
    public var mirror: String
    public var securityMirror: String
    public var extra: [AptSource]
    public var include: [String]

    public init(mirror: String = DebianRecipe.defaultMirror, securityMirror: String? = nil, extra: [AptSource] = [], include: [String] = []) {
        self.mirror = mirror
        self.securityMirror = securityMirror ?? Self.securityMirror(for: mirror)
        self.extra = extra
        self.include = include
    }

    /// Debian's convention: `…/debian` → `…/debian-security`.
    public static func securityMirror(for mirror: String) -> String {
        let trimmed = mirror.hasSuffix("/") ? String(mirror.dropLast()) : mirror
        return trimmed + "-security"
    }

    /// bookworm, bookworm-updates and bookworm-security, main.
    public var debian: [AptSource] {
        [
            AptSource(uri: mirror, suite: DebianRecipe.suite),
            AptSource(uri: mirror, suite: "\(DebianRecipe.suite)-updates"),
            AptSource(uri: securityMirror, suite: "\(DebianRecipe.suite)-security")
        ]
    }

    public var all: [AptSource] { debian + extra }

    /// What the image's own `sources.list` says.
    public var imageSourcesList: String { debian.map(\.description).joined(separator: "\n") + "\n" }

    /// A package name as Debian policy allows it (lower case letters, digits, `+ - .`, at least two).
    public static func isPackageName(_ s: String) -> Bool {
        guard s.count >= 2, let first = s.first, first.isLowercase || first.isNumber else { return false }
        return s.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || "+-.".contains($0) }
    }
}
