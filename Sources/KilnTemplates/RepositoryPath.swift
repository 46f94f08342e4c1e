import Foundation

/// The one rule for a relative `scriptUri` / `sourceUri`: it names a file of the template's repository,
/// looked up next to the template file first, then from the repository root. `..` may climb between
/// folders (`../scripts/web.sh` from `templates/web.json` is `scripts/web.sh`) but never out of the
/// repository. GitOps planning, staging from a commit and staging from a directory all use this.
public enum RepositoryPath {
    /// `a/./b/../c` → `a/c`; nil when the path climbs out of its root or names the root itself.
    public static func normalized(_ path: String) -> String? {
        var parts: [Substring] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." {
                guard !parts.isEmpty else { return nil }
                parts.removeLast()
            } else {
                parts.append(c)
            }
        }
        return parts.isEmpty ? nil : parts.joined(separator: "/")
    }

    /// Where `reference` may live, in lookup order: resolved against the template's directory, then against
    /// the repository root. Empty when it climbs out of the repository from both.
    /// - Parameter templateDirectory: the template file's directory, repository-relative ("" at the root).
    public static func candidates(_ reference: String, templateDirectory: String) -> [String] {
        var out: [String] = []
        for base in [templateDirectory, ""] {
            if let p = normalized(base.isEmpty ? reference : base + "/" + reference), !out.contains(p) { out.append(p) }
        }
        return out
    }

    /// The directory of a repository-relative file path ("" for a file at the root).
    public static func directory(of file: String) -> String {
        (file as NSString).deletingLastPathComponent
    }

    /// Where a symbolic link stored in the repository points, as a repository path; nil when it points out
    /// of the repository (an absolute target, or `..` past the root).
    /// - Parameters:
    ///   - link: the link's own repository path.
    ///   - target: the link's content (its target as written).
    public static func linkTarget(_ link: String, target: String) -> String? {
        guard !target.hasPrefix("/") else { return nil }
        let dir = directory(of: link)
        return normalized(dir.isEmpty ? target : dir + "/" + target)
    }
}
