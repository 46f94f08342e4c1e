import CLibGit2
import Foundation

/// Process-wide facts about the linked libgit2 and its one-time initialisation.
///
/// libgit2 must be initialised once per process before any other call (`git_libgit2_init`), and its
/// feature set depends on how Debian built it (threads, HTTPS through mbedTLS, SSH through libssh2).
/// Kiln reports both in `kiln version` so a user can tell at a glance whether ssh:// remotes will work.
public enum LibGit2 {
    /// The features libgit2 was compiled with.
    public struct Features: OptionSet, Sendable, Hashable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let threads = Features(rawValue: Int32(GIT_FEATURE_THREADS.rawValue))
        public static let https = Features(rawValue: Int32(GIT_FEATURE_HTTPS.rawValue))
        public static let ssh = Features(rawValue: Int32(GIT_FEATURE_SSH.rawValue))
        public static let nsec = Features(rawValue: Int32(GIT_FEATURE_NSEC.rawValue))

        /// Names in a stable order, for display.
        public var names: [String] {
            var out: [String] = []
            if contains(.threads) { out.append("threads") }
            if contains(.https) { out.append("https") }
            if contains(.ssh) { out.append("ssh") }
            if contains(.nsec) { out.append("nsec") }
            return out
        }
    }

    /// A semantic version of the linked library (not the headers Kiln was compiled against).
    public struct Version: Sendable, Hashable, CustomStringConvertible {
        public var major: Int
        public var minor: Int
        public var patch: Int
        public var description: String { "\(major).\(minor).\(patch)" }
    }

    /// Runs `git_libgit2_init` exactly once for the process; every KilnGit entry point calls it.
    public static func initialize() {
        _ = initOnce
    }

    private static let initOnce: Int32 = {
        // libgit2's HTTPS transport (mbedTLS) writes with plain send(2): a write to a connection the server — or
        // the stall watchdog — has closed raises SIGPIPE, whose default action kills the process. SwiftNIO
        // ignores it the same way whenever it opens a socket; processes Kiln spawns itself get the default back
        // (BackgroundProcess.resetSignals).
        signal(SIGPIPE, SIG_IGN)
        return git_libgit2_init()
    }()

    /// The runtime version of libgit2.
    public static var version: Version {
        initialize()
        var major: Int32 = 0, minor: Int32 = 0, rev: Int32 = 0
        git_libgit2_version(&major, &minor, &rev)
        return Version(major: Int(major), minor: Int(minor), patch: Int(rev))
    }

    /// The features of the linked libgit2.
    public static var features: Features {
        initialize()
        return Features(rawValue: git_libgit2_features())
    }
}
