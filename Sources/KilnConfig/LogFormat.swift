import Foundation
import KilnTemplates
import Logging

/// Kiln's log lines on standard error, in the configured format: `text` (for people), `logfmt` or `json` (for
/// collectors). Metadata (template id, run id, …) becomes fields; secrets are never put into metadata.
public struct KilnLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String
    let format: KilnConfiguration.LogFormat

    public init(label: String, format: KilnConfiguration.LogFormat, level: Logger.Level) {
        self.label = label
        self.format = format
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let explicit = event.metadata { fields.merge(explicit) { _, new in new } }
        let text = Self.render(date: Date(), level: event.level, label: label, message: "\(event.message)", fields: fields, format: format)
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    static var lineEncoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    /// One line in `format`. Field order is stable (sorted), so lines diff and grep well.
    public static func render(
        date: Date, level: Logger.Level, label: String, message: String, fields: Logger.Metadata,
        format: KilnConfiguration.LogFormat
    ) -> String {
        let time = ISO8601DateFormatter.string(
            from: date, timeZone: TimeZone(identifier: "UTC")!,
            formatOptions: [.withInternetDateTime, .withFractionalSeconds])
        let sorted = fields.sorted { $0.key < $1.key }.map { ($0.key, "\($0.value)") }
        switch format {
        case .text:
            let meta = sorted.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            return "\(time) \(level) \(label): \(meta.isEmpty ? "" : meta + " ")\(message)"
        case .logfmt:
            var parts = ["time=\(time)", "level=\(level)", "logger=\(logfmtValue(label))", "msg=\(logfmtValue(message))"]
            parts += sorted.map { "\(logfmtKey($0.0))=\(logfmtValue($0.1))" }
            return parts.joined(separator: " ")
        case .json:
            var object: [String: String] = ["time": time, "level": "\(level)", "logger": label, "msg": message]
            for (k, v) in sorted where object[k] == nil { object[k] = v }
            let data = (try? KilnLogHandler.lineEncoder.encode(object)) ?? Data()
            return String(decoding: data, as: UTF8.self)
        }
    }

    static func logfmtKey(_ k: String) -> String {
        let cleaned = k.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == "-" ? $0 : "_" }
        return cleaned.isEmpty ? "_" : String(cleaned)
    }

    /// Bare when it can be, else a JSON string literal (`"`, `\` and control characters escaped), as logfmt
    /// parsers expect.
    static func logfmtValue(_ v: String) -> String {
        let plain = !v.isEmpty && v.unicodeScalars.allSatisfy { $0.value > 0x20 && $0 != "\"" && $0 != "=" && $0 != "\\" && $0.value != 0x7F }
        return plain ? v : jsonQuoted(v)
    }
}

extension KilnConfiguration.LogLevel {
    public var loggerLevel: Logger.Level { Logger.Level(rawValue: rawValue) ?? .info }
}
