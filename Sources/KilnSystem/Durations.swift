import Foundation

/// Durations as people write them (flags, configuration files) and as seconds (logs, metrics, run phases):
/// one parser and one conversion for every layer.
extension Duration {
    /// The duration in seconds, fractions included.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// `30s`, `5m`, `1h`, `250ms`, `90` (seconds); nil for anything else, including negative values, `inf`,
    /// `nan` and more than a week (a value that would trap where it becomes whole milliseconds).
    public init?(text: String) {
        let s = text.trimmingCharacters(in: .whitespaces)
        var ms = Double(s).map { $0 * 1000 }
        for (suffix, factor) in [("ms", 1.0), ("s", 1000.0), ("m", 60_000.0), ("h", 3_600_000.0)] where s.hasSuffix(suffix) {
            ms = Double(s.dropLast(suffix.count)).map { $0 * factor }
            break
        }
        guard let v = ms, v.isFinite, v >= 0, v <= 7 * 86_400_000 else { return nil }
        self = .milliseconds(Int64(v.rounded()))
    }
}
