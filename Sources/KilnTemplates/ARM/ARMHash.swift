import Crypto
import Foundation

/// ARM's deterministic names: `guid()` and `uniqueString()`, bit for bit, so that a template evaluated by Kiln
/// names its resources exactly as an Azure deployment of it does.
enum ARMHash {
    /// ARM's namespace for `guid()`.
    static let guidNamespace: [UInt8] = [0x11, 0xfb, 0x06, 0xfb, 0x71, 0x2d, 0x4d, 0xdd, 0x98, 0xc7, 0xe7, 0x1b, 0xbd, 0x58, 0x88, 0x30]

    /// `guid(a, b, …)`: a version-5 UUID (RFC 4122 §4.3, SHA-1) of the arguments joined with `-`, in ARM's namespace.
    static func guid(_ parts: [String]) -> String {
        var sha = Insecure.SHA1()
        sha.update(data: guidNamespace)
        sha.update(data: Data(parts.joined(separator: "-").utf8))
        var b = Array(sha.finalize().prefix(16))
        b[6] = (b[6] & 0x0F) | 0x50
        b[8] = (b[8] & 0x3F) | 0x80
        let hex = b.map { String(format: "%02x", $0) }.joined()
        let h = Array(hex)
        return [h[0..<8], h[8..<12], h[12..<16], h[16..<20], h[20..<32]].map { String($0) }.joined(separator: "-")
    }

    /// `uniqueString(a, b, …)`: 13 characters of base 32 (`a`–`z`, `2`–`7`) from ARM's 64-bit MurmurHash of the
    /// arguments joined with `-`.
    static func uniqueString(_ parts: [String]) -> String {
        var x = murmur64(Array(parts.joined(separator: "-").utf8))
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
        var out = ""
        for _ in 0..<13 {
            out.append(alphabet[Int(x >> 59)])
            x <<= 5
        }
        return out
    }

    /// The 64-bit MurmurHash variant ARM uses (two 32-bit lanes of MurmurHash3 x86_128), seed 0.
    static func murmur64(_ data: [UInt8], seed: UInt32 = 0) -> UInt64 {
        let c1: UInt32 = 0x239b_961b, c2: UInt32 = 0xab0e_9789
        func rotl(_ x: UInt32, _ r: UInt32) -> UInt32 { (x << r) | (x >> (32 - r)) }
        func word(_ i: Int, _ n: Int) -> UInt32 {
            var w: UInt32 = 0
            for k in 0..<n { w |= UInt32(data[i + k]) << (8 * UInt32(k)) }
            return w
        }
        func fmix(_ h: UInt32) -> UInt32 {
            var h = h
            h ^= h >> 16
            h &*= 0x85eb_ca6b
            h ^= h >> 13
            h &*= 0xc2b2_ae35
            h ^= h >> 16
            return h
        }
        var h1 = seed, h2 = seed
        var i = 0
        while i + 8 <= data.count {
            var k1 = word(i, 4), k2 = word(i + 4, 4)
            k1 &*= c1
            k1 = rotl(k1, 15)
            k1 &*= c2
            h1 ^= k1
            h1 = rotl(h1, 19) &+ h2
            h1 = h1 &* 5 &+ 0x561c_cd1b
            k2 &*= c2
            k2 = rotl(k2, 17)
            k2 &*= c1
            h2 ^= k2
            h2 = rotl(h2, 13) &+ h1
            h2 = h2 &* 5 &+ 0x0bca_a747
            i += 8
        }
        let rest = data.count - i
        if rest > 0 {
            var k1 = word(i, min(rest, 4))
            k1 &*= c1
            k1 = rotl(k1, 15)
            k1 &*= c2
            h1 ^= k1
            if rest > 4 {
                var k2 = word(i + 4, rest - 4)
                k2 &*= c2
                k2 = rotl(k2, 17)
                k2 &*= c1
                h2 ^= k2
            }
        }
        let length = UInt32(truncatingIfNeeded: data.count)
        h1 ^= length
        h2 ^= length
        h1 &+= h2
        h2 &+= h1
        h1 = fmix(h1)
        h2 = fmix(h2)
        h1 &+= h2
        h2 &+= h1
        return (UInt64(h2) << 32) | UInt64(h1)
    }
}
