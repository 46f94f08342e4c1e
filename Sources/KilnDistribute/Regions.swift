import Foundation
import KilnSystem
import KilnTemplates
import Yams

/// Regions are named storage locations: `<data>/regions/<name>/` unless `regions.yaml` maps a name elsewhere
/// (another disk, a mounted share). With `allowOnly`, an unlisted name is an error naming the allowed ones.
///
/// ```yaml
/// regions:
///   westeurope: /mnt/fast/kiln/westeurope
/// allowOnly: [westeurope, northeurope]
/// ```
public struct RegionMap: Sendable, Hashable {
    public var defaultRoot: String
    public var overrides: [String: String]
    public var allowOnly: Set<String>?
    public var source: String?

    public init(defaultRoot: String, overrides: [String: String] = [:], allowOnly: Set<String>? = nil, source: String? = nil) {
        self.defaultRoot = defaultRoot
        self.overrides = Dictionary(uniqueKeysWithValues: overrides.map { (Self.normalize($0.key), $0.value) })
        self.allowOnly = allowOnly.map { Set($0.map(Self.normalize)) }
        self.source = source
    }

    /// Azure's normalisation: "West Europe" → "westeurope".
    public static func normalize(_ name: String) -> String {
        name.lowercased().filter { !$0.isWhitespace }
    }

    public struct RegionError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// The storage directory of a region, or why the name is not usable.
    public func directory(for region: String) throws(RegionError) -> String {
        let name = Self.normalize(region)
        guard !name.isEmpty, name.allSatisfy({ ($0.isASCII && $0.isLetter) || $0.isNumber || $0 == "-" }) else {
            throw RegionError(description: "'\(region)' is not a region name (letters, digits and '-')")
        }
        if let allowOnly, !allowOnly.contains(name) {
            throw RegionError(
                description: "region '\(region)' is not allowed\(source.map { " by \($0)" } ?? ""); allowed: \(allowOnly.sorted().joined(separator: ", "))")
        }
        return overrides[name] ?? (defaultRoot as NSString).appendingPathComponent(name)
    }

    /// `<data>/regions.yaml`, when present.
    public static func load(paths: KilnPaths) throws(RegionError) -> RegionMap {
        let file = (paths.dataDir as NSString).appendingPathComponent("regions.yaml")
        var map = RegionMap(defaultRoot: paths.regions, source: file)
        guard let data = FileManager.default.contents(atPath: file) else { return map }
        let text = String(decoding: data, as: UTF8.self)
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return map }
        let root: JSONValue
        do { root = try YAMLDecoder().decode(JSONValue.self, from: text) } catch { throw RegionError(description: "\(file): cannot parse YAML: \(error)") }
        guard let top = root.object else { return map }
        if let r = top["regions"] {
            guard let m = r.object else { throw RegionError(description: "\(file): $.regions: expected a mapping of region name to directory") }
            for (k, v) in m {
                guard let dir = v.string, dir.hasPrefix("/") else { throw RegionError(description: "\(file): $.regions.\(k): expected an absolute directory") }
                map.overrides[normalize(k)] = dir
            }
        }
        if let a = top["allowOnly"] {
            guard let list = a.array?.compactMap(\.string), list.count == a.array?.count else {
                throw RegionError(description: "\(file): $.allowOnly: expected a list of region names")
            }
            map.allowOnly = Set(list.map(normalize))
        }
        return map
    }
}
