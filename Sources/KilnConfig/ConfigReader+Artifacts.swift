// The configuration's trust settings: `artifacts` (what templates may read and reach) and `distribution`
// (where they may write VHDs), read into an ArtifactPolicy.
import Foundation
import KilnTemplates

extension ConfigReader {
    /// `artifacts: { allowedFileRoots: [/dir], allowedHosts: [name | *.domain | CIDR] }`.
    mutating func artifacts(_ node: SourceNode, into policy: inout ArtifactPolicy) {
        let m = members(node, "$.artifacts", allowed: ["allowedFileRoots", "allowedHosts"])
        if let roots = absolutePaths(m, "allowedFileRoots", "$.artifacts") { policy.localFiles = .under(roots) }
        guard let (hosts, line) = m["allowedHosts"] else { return }
        guard let items = hosts.elements else {
            problem(hosts, "$.artifacts.allowedHosts", "expected a list of host names and CIDR blocks", line: line)
            return
        }
        for (i, item) in items.enumerated() {
            let p = "$.artifacts.allowedHosts[\(i)]"
            guard let text = item.stringValue ?? item.yamlText, !text.isEmpty else { problem(item, p, "expected a host name or a CIDR block"); continue }
            if let range = AddressRange(text) {
                policy.allowedNetworks.append(range)
            } else if text.contains("/") || IPAddress(text.components(separatedBy: "/")[0]) != nil {
                problem(item, p, "'\(text)' is not a CIDR block (like 10.20.0.0/16 or fd00::/8)")
            } else if Self.isHostRule(text) {
                policy.allowedHostNames.append(text.lowercased())
            } else {
                problem(item, p, "'\(text)' is not a host name (like mirror.internal or *.corp.example) or a CIDR block")
            }
        }
    }

    /// `distribution: { allowedVhdRoots: [/dir] }`.
    mutating func distribution(_ node: SourceNode, into policy: inout ArtifactPolicy) {
        let m = members(node, "$.distribution", allowed: ["allowedVhdRoots"])
        if let roots = absolutePaths(m, "allowedVhdRoots", "$.distribution") { policy.vhdRoots = roots }
    }

    /// A list of absolute directories.
    mutating func absolutePaths(_ m: [String: (SourceNode, Int)], _ key: String, _ path: String) -> [String]? {
        guard let (node, line) = m[key] else { return nil }
        guard let items = node.elements else {
            problem(node, "\(path).\(key)", "expected a list of absolute directories", line: line)
            return nil
        }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard let s = item.stringValue, s.hasPrefix("/") else {
                problem(item, "\(path).\(key)[\(i)]", "expected an absolute directory")
                continue
            }
            out.append(s)
        }
        return out
    }

    static func isHostRule(_ s: String) -> Bool {
        let name = s.hasPrefix("*.") ? String(s.dropFirst(2)) : s
        return !name.isEmpty && name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.allSatisfy { ($0.isLetter || $0.isNumber || $0 == "-") && $0.isASCII }
        }
    }
}
