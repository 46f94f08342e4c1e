import Foundation

// CIDR functions: parseCidr, cidrSubnet, cidrHost (IPv4 and IPv6).
extension ARMFunctions {
    static let networks: [String: Function] = [
        "parsecidr": { a in
            try a.arity(1...1)
            let n = try CIDR(try a.string(0), a)
            var pairs: [(String, SourceNode)] = [("network", .string(n.text(n.network))), ("netmask", .string(n.text(n.mask)))]
            if n.isV4 { pairs.append(("broadcast", .string(n.text(n.last)))) }
            pairs += [("firstUsable", .string(n.text(n.firstUsable))), ("lastUsable", .string(n.text(n.lastUsable))), ("cidr", .int(n.prefix))]
            return .object(pairs)
        },
        "cidrsubnet": { a in
            try a.arity(3...3)
            let n = try CIDR(try a.string(0), a)
            let newPrefix = try a.int(1), index = try a.int(2)
            guard newPrefix >= n.prefix, newPrefix <= n.bits else { throw a.fail("the new prefix /\(newPrefix) must be between /\(n.prefix) and /\(n.bits)") }
            let span = newPrefix - n.prefix
            guard index >= 0 else { throw a.fail("subnet index \(index) is negative") }
            // 2^span subnets; with span ≥ 63 every Int index fits.
            if span < 63, index >= 1 << span { throw a.fail("subnet index \(index) is out of range (0 to \((1 << span) - 1))") }
            let network = n.network + (UInt128(index) << UInt128(n.bits - newPrefix))
            return .string("\(n.text(network))/\(newPrefix)")
        },
        "cidrhost": { a in
            try a.arity(2...2)
            let n = try CIDR(try a.string(0), a)
            let index = try a.int(1)
            guard index >= 0 else { throw a.fail("host index \(index) is negative") }
            guard n.lastUsable >= n.firstUsable, UInt128(index) <= n.lastUsable - n.firstUsable else {
                throw a.fail("host index \(index) is outside \(try a.string(0))")
            }
            return .string(n.text(n.firstUsable + UInt128(index)))
        }
    ]

    /// A network in CIDR notation, as 128-bit integers whatever the family.
    struct CIDR {
        var isV4: Bool
        var network: UInt128
        var prefix: Int
        var bits: Int { isV4 ? 32 : 128 }
        var mask: UInt128 {
            let all: UInt128 = isV4 ? 0xFFFF_FFFF : UInt128.max
            return prefix == 0 ? 0 : (all << UInt128(bits - prefix)) & all
        }
        var last: UInt128 { network | (~mask & (isV4 ? 0xFFFF_FFFF : UInt128.max)) }
        /// IPv4 reserves the network and broadcast addresses (except in /31 and /32); IPv6 has no broadcast.
        var firstUsable: UInt128 { isV4 && prefix < 31 ? network + 1 : network }
        var lastUsable: UInt128 { isV4 && prefix < 31 ? last - 1 : last }

        init(_ text: String, _ a: Arguments) throws {
            let parts = text.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let p = Int(parts[1]) else { throw a.fail("'\(text)' is not in CIDR notation (address/prefix)") }
            if let v4 = Self.parseV4(String(parts[0])) {
                guard (0...32).contains(p) else { throw a.fail("the prefix /\(p) of '\(text)' is not between 0 and 32") }
                isV4 = true
                prefix = p
                network = 0
                network = v4 & mask
            } else if let v6 = Self.parseV6(String(parts[0])) {
                guard (0...128).contains(p) else { throw a.fail("the prefix /\(p) of '\(text)' is not between 0 and 128") }
                isV4 = false
                prefix = p
                network = 0
                network = v6 & mask
            } else {
                throw a.fail("'\(parts[0])' is not an IPv4 or IPv6 address")
            }
        }

        func text(_ v: UInt128) -> String {
            if isV4 { return (0..<4).map { String((v >> UInt128(24 - 8 * $0)) & 0xFF) }.joined(separator: ".") }
            let groups = (0..<8).map { Int((v >> UInt128(112 - 16 * $0)) & 0xFFFF) }
            // RFC 5952: the longest run (two or more) of zero groups becomes "::".
            var best = (start: -1, length: 0)
            var i = 0
            while i < 8 {
                if groups[i] == 0 {
                    var j = i
                    while j < 8, groups[j] == 0 { j += 1 }
                    if j - i > best.length, j - i >= 2 { best = (i, j - i) }
                    i = j
                } else {
                    i += 1
                }
            }
            let hex = groups.map { String($0, radix: 16) }
            guard best.start >= 0 else { return hex.joined(separator: ":") }
            return hex[..<best.start].joined(separator: ":") + "::" + hex[(best.start + best.length)...].joined(separator: ":")
        }

        static func parseV4(_ s: String) -> UInt128? {
            let octets = s.split(separator: ".", omittingEmptySubsequences: false)
            guard octets.count == 4 else { return nil }
            var v: UInt128 = 0
            for o in octets {
                guard let b = UInt8(o), o.count <= 3 else { return nil }
                v = (v << 8) | UInt128(b)
            }
            return v
        }

        static func parseV6(_ s: String) -> UInt128? {
            let halves = s.components(separatedBy: "::")
            guard halves.count <= 2 else { return nil }
            func groups(_ part: String) -> [UInt16]? {
                part.isEmpty
                    ? []
                    : part.split(separator: ":", omittingEmptySubsequences: false).map { UInt16($0, radix: 16) }.reduce([UInt16]?([])) { acc, g in
                        guard let acc, let g else { return nil }
                        return acc + [g]
                    }
            }
            guard let head = groups(halves[0]) else { return nil }
            let tail = halves.count == 2 ? groups(halves[1]) : []
            guard let tail else { return nil }
            let fill = 8 - head.count - tail.count
            guard halves.count == 2 ? fill >= 1 : fill == 0 else { return nil }
            let all = head + Array(repeating: 0, count: max(fill, 0)) + tail
            return all.reduce(UInt128(0)) { ($0 << 16) | UInt128($1) }
        }
    }
}
