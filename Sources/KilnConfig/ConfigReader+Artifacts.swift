// The configuration's trust settings: `artifacts` (what templates may read and reach) and `distribution`
// (where they may write VHDs), read into an ArtifactPolicy.
import Foundation
import KilnBuild
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

    /// `build: { network: isolated | host, allowNetworks: [CIDR] }`. Without `network`, isolated when this
    /// process can set it up (root), else host networking.
    mutating func build(_ node: SourceNode) -> BuildNetworkPolicy {
        let m = members(node, "$.build", allowed: ["network", "allowNetworks"])
        var allow: [String] = []
        if let (list, line) = m["allowNetworks"] {
            if let items = list.elements {
                for (i, item) in items.enumerated() {
                    let text = item.stringValue ?? item.yamlText ?? ""
                    if let r = AddressRange(text), r.network.isV4 {
                        allow.append(r.description)
                    } else {
                        problem(item, "$.build.allowNetworks[\(i)]", "'\(text)' is not an IPv4 CIDR block (like 10.20.0.0/16)")
                    }
                }
            } else {
                problem(list, "$.build.allowNetworks", "expected a list of IPv4 CIDR blocks", line: line)
            }
        }
        switch string(m, "network", "$.build") {
        case nil: return .automatic(allow: allow)
        case "isolated": return .isolated(allow: allow)
        case "host":
            if !allow.isEmpty { problem(m["allowNetworks"]?.0, "$.build.allowNetworks", "applies to network: isolated only") }
            return .host
        case let other?:
            problem(m["network"]?.0, "$.build.network", "'\(other)' is not one of isolated, host", line: m["network"]?.1)
            return .automatic(allow: allow)
        }
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
        return !name.isEmpty
            && name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
                !label.isEmpty && label.count <= 63 && label.allSatisfy { ($0.isLetter || $0.isNumber || $0 == "-") && $0.isASCII }
            }
    }
}
