import Foundation

/// An IPv4 or IPv6 address, and what part of the network it belongs to: how Kiln decides whether a URL in
/// a template points at the build host itself or at a private network behind it (SSRF).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6), network order.
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// `10.0.0.1`, `::1`, `[fe80::1]` (brackets as in a URL); nil for anything else, host names included.
    public init?(_ text: String) {
        var t = Substring(text)
        if t.hasPrefix("["), t.hasSuffix("]") { t = t.dropFirst().dropLast() }
        if let percent = t.firstIndex(of: "%") { t = t[..<percent] }  // a v6 zone id (fe80::1%eth0)
        var v4 = in_addr()
        if inet_pton(AF_INET, String(t), &v4) == 1 {
            self.bytes = withUnsafeBytes(of: v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, String(t), &v6) == 1 {
            self.bytes = withUnsafeBytes(of: v6) { Array($0) }
            return
        }
        return nil
    }

    public var isV4: Bool { bytes.count == 4 }

    /// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`) or IPv4-compatible (`::a.b.c.d`) IPv6
    /// address: the kernel connects to it as that IPv4 address, so it is judged as one.
    public var embeddedV4: IPAddress? {
        guard bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }) else { return nil }
        if bytes[10] == 0xff, bytes[11] == 0xff { return IPAddress(bytes: Array(bytes[12...])) }
        if bytes[10] == 0, bytes[11] == 0, bytes[12...].contains(where: { $0 != 0 }), !(bytes[12...14].allSatisfy { $0 == 0 } && bytes[15] <= 1) {
            return IPAddress(bytes: Array(bytes[12...]))
        }
        return nil
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isV4 ? AF_INET : AF_INET6
        let ok = bytes.withUnsafeBytes { raw in inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) != nil }
        guard ok else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Where an address sits, for the rule "no loopback, link-local, private or unique-local targets".
    public enum Scope: String, Sendable, Hashable {
        case loopback, linkLocal = "link-local", privateNetwork = "private", uniqueLocal = "unique-local"
        case unspecified, multicast, sharedAddressSpace = "shared address space (carrier-grade NAT)", reserved
        case global

        /// Not on the public internet: reaching it from a template needs an explicit allowance.
        public var isInternal: Bool { self != .global }
    }

    public var scope: Scope {
        if let v4 = embeddedV4 { return v4.scope }
        return isV4 ? Self.v4Scope(bytes) : Self.v6Scope(bytes)
    }

    private static func v4Scope(_ b: [UInt8]) -> Scope {
        switch (b[0], b[1]) {
        case (0, _): return .unspecified  // 0.0.0.0/8: "this network"; Linux connects 0.0.0.0 to the host itself
        case (127, _): return .loopback
        case (10, _), (172, 16...31), (192, 168): return .privateNetwork
        case (169, 254): return .linkLocal  // cloud metadata (169.254.169.254) lives here
        case (100, 64...127): return .sharedAddressSpace
        case (192, 0) where b[2] == 0: return .reserved  // 192.0.0.0/24, IETF protocol assignments
        case (198, 18...19): return .reserved  // benchmarking
        case (224...239, _): return .multicast
        case (240...255, _): return .reserved  // incl. broadcast
        default: return .global
        }
    }

    private static func v6Scope(_ b: [UInt8]) -> Scope {
        if b.allSatisfy({ $0 == 0 }) { return .unspecified }
        if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return .loopback }
        if b[0] == 0xfe && (b[1] & 0xc0) == 0x80 { return .linkLocal }  // fe80::/10
        if (b[0] & 0xfe) == 0xfc { return .uniqueLocal }  // fc00::/7
        if b[0] == 0xff { return .multicast }
        if b[0] == 0xfe && (b[1] & 0xc0) == 0xc0 { return .reserved }  // fec0::/10, deprecated site-local
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b { return .reserved }  // 64:ff9b::/96, NAT64 reaches IPv4
        if b[0] == 0x20 && b[1] == 0x02 { return .reserved }  // 2002::/16, 6to4 embeds any IPv4 address
        return .global
    }
}

/// A CIDR block (`10.20.0.0/16`, `fd00::/8`, or one address).
public struct AddressRange: Sendable, Hashable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let address = IPAddress(parts[0]) else { return nil }
        let bits = address.bytes.count * 8
        let length = parts.count == 2 ? Int(parts[1]) : bits
        guard let length, (0...bits).contains(length) else { return nil }
        network = address
        prefixLength = length
    }

    public func contains(_ address: IPAddress) -> Bool {
        let a = address.bytes.count == network.bytes.count ? address : (address.embeddedV4 ?? address)
        guard a.bytes.count == network.bytes.count else { return false }
        var remaining = prefixLength
        for (x, y) in zip(a.bytes, network.bytes) where remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xff : ~(0xff >> UInt8(remaining))
            if x & mask != y & mask { return false }
            remaining -= 8
        }
        return true
    }

    public var description: String { "\(network)/\(prefixLength)" }
}
