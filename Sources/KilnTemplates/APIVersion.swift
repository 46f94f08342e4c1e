/// An imageTemplates REST api-version, which decides the rules that changed over time.
///
/// Before 2024-02-01 AIB matched property names case-insensitively and ignored unknown properties; from
/// 2024-02-01 on, names are case-sensitive and unknown properties are rejected. Kiln reproduces both so
/// that templates written for an old api-version keep validating exactly as AIB would treat them.
public struct APIVersion: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    /// `YYYY-MM-DD`.
    public var date: String
    /// `-preview` suffix.
    public var isPreview: Bool

    public init?(_ text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        var base = Substring(t)
        var preview = false
        if t.lowercased().hasSuffix("-preview") {
            base = base.dropLast("-preview".count)
            preview = true
        }
        let parts = base.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            parts.allSatisfy({ $0.allSatisfy(\.isASCII) && Int($0) != nil }),
            let m = Int(parts[1]), (1...12).contains(m), let d = Int(parts[2]), (1...31).contains(d)
        else { return nil }
        date = String(base)
        isPreview = preview
    }

    public var description: String { isPreview ? "\(date)-preview" : date }
    public static func < (a: APIVersion, b: APIVersion) -> Bool {
        a.date == b.date ? (a.isPreview && !b.isPreview) : a.date < b.date
    }

    /// The newest api-version Kiln implements; used when a bare template names none.
    public static let latest = APIVersion("2025-10-01")!
    /// The oldest api-version accepted.
    public static let minimum = APIVersion("2020-02-14")!
    /// From this version on, property names are case-sensitive and unknown properties are rejected.
    public static let strictFrom = APIVersion("2024-02-01")!
    /// The api-versions AIB has published from `minimum` on.
    public static let published: [APIVersion] = [
        "2020-02-14", "2021-10-01", "2022-02-14", "2022-07-01", "2023-07-01", "2024-02-01", "2025-10-01"
    ].map { APIVersion($0)! }

    /// Case-sensitive names and unknown properties rejected.
    public var isStrict: Bool { self >= Self.strictFrom }
}

import Foundation
