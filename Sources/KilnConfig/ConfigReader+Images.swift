// The configuration's `images` section: how the controller keeps the Debian 12 base fresh.
import Foundation
import KilnBuild
import KilnTemplates

extension ConfigReader {
    /// `images: { refreshInterval: 24h, mirror: URL, securityMirror: URL, extraSources: [deb line], include: [package] }`.
    mutating func images(_ node: SourceNode, into c: inout KilnConfiguration) {
        let m = members(node, "$.images", allowed: ["refreshInterval", "mirror", "securityMirror", "extraSources", "include"])
        if let i = string(m, "refreshInterval", "$.images") {
            if let s = Self.seconds(i), s >= 60 {
                c.imageRefreshSeconds = s
            } else {
                problem(
                    m["refreshInterval"]?.0, "$.images.refreshInterval", "expected a duration of at least 1m, like 6h or 24h; found '\(i)'",
                    line: m["refreshInterval"]?.1)
            }
        }
        var sources = DebianSources()
        for key in ["mirror", "securityMirror"] {
            guard let url = string(m, key, "$.images") else { continue }
            guard url.hasPrefix("http://") || url.hasPrefix("https://") || url.hasPrefix("file:/") else {
                problem(m[key]?.0, "$.images.\(key)", "expected an http(s) or file: URL of a Debian mirror; found '\(url)'", line: m[key]?.1)
                continue
            }
            // mirror comes first: the security mirror follows it unless given too.
            if key == "mirror" {
                sources = DebianSources(mirror: url)
            } else {
                sources.securityMirror = url
            }
        }
        sources.extra = strings(m, "extraSources").compactMap { item in
            switch AptSource.parse(item.text) {
            case .success(let s): return s
            case .failure(let e):
                let why: String
                if case .badSource(_, let reason) = e { why = reason } else { why = e.description }
                problem(item.node, item.path, "'\(item.text)' is not an APT source line: \(why)")
                return nil
            }
        }
        sources.include = strings(m, "include").compactMap { item in
            guard DebianSources.isPackageName(item.text) else {
                problem(item.node, item.path, "'\(item.text)' is not a Debian package name")
                return nil
            }
            return item.text
        }
        c.debianSources = sources
    }

    /// The strings of the list `$.images.<key>`, each with its node and path; other elements are problems.
    private mutating func strings(_ m: [String: (SourceNode, Int)], _ key: String) -> [(text: String, node: SourceNode, path: String)] {
        guard let (node, line) = m[key] else { return [] }
        guard let items = node.elements else {
            problem(node, "$.images.\(key)", "expected a list of strings", line: line)
            return []
        }
        var out: [(String, SourceNode, String)] = []
        for (i, item) in items.enumerated() {
            guard let s = item.stringValue else {
                problem(item, "$.images.\(key)[\(i)]", "expected a string")
                continue
            }
            out.append((s, item, "$.images.\(key)[\(i)]"))
        }
        return out
    }
}
