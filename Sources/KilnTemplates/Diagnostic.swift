/// An error code as AIB reports it in `provisioningError.provisioningErrorCode`, plus the ARM-level codes
/// AIB's front door returns before a template reaches the service, plus a few Kiln adds where neither
/// has one. Codes are strings on the wire so that new ones do not break old readers.
public struct ErrorCode: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }

    // AIB provisioning error codes.
    public static let badSourceType: ErrorCode = "BadSourceType"
    public static let badPIRSource: ErrorCode = "BadPIRSource"
    public static let badManagedImageSource: ErrorCode = "BadManagedImageSource"
    public static let badSharedImageVersionSource: ErrorCode = "BadSharedImageVersionSource"
    public static let badCustomizerType: ErrorCode = "BadCustomizerType"
    public static let unsupportedCustomizerType: ErrorCode = "UnsupportedCustomizerType"
    public static let noCustomizerScript: ErrorCode = "NoCustomizerScript"
    public static let badValidatorType: ErrorCode = "BadValidatorType"
    public static let unsupportedValidatorType: ErrorCode = "UnsupportedValidatorType"
    public static let noValidatorScript: ErrorCode = "NoValidatorScript"
    public static let badDistributeType: ErrorCode = "BadDistributeType"
    public static let badSharedImageDistribute: ErrorCode = "BadSharedImageDistribute"
    public static let badStagingResourceGroup: ErrorCode = "BadStagingResourceGroup"
    public static let serverError: ErrorCode = "ServerError"
    public static let other: ErrorCode = "Other"

    // ARM front-door codes: malformed or unknown content, a bad value, a deployment-template problem.
    public static let invalidRequestContent: ErrorCode = "InvalidRequestContent"
    public static let invalidParameter: ErrorCode = "InvalidParameter"
    public static let invalidTemplate: ErrorCode = "InvalidTemplate"
    public static let noRegisteredProviderFound: ErrorCode = "NoRegisteredProviderFound"

    // Kiln's own.
    /// A value still holds a documentation placeholder such as `<region>`.
    public static let unfilledPlaceholder: ErrorCode = "UnfilledPlaceholder"
    /// The file cannot be read or parsed at all.
    public static let invalidFile: ErrorCode = "InvalidFile"
}

/// A JSON path in the `$.a.b[2].c` notation used by every Kiln diagnostic.
public struct JSONPath: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Component: Sendable, Hashable {
        case key(String)
        case index(Int)
    }
    public var components: [Component]
    public init(_ components: [Component] = []) { self.components = components }
    public static let root = JSONPath()

    public func appending(_ key: String) -> JSONPath { JSONPath(components + [.key(key)]) }
    public func appending(index: Int) -> JSONPath { JSONPath(components + [.index(index)]) }
    public static func / (lhs: JSONPath, rhs: String) -> JSONPath { lhs.appending(rhs) }
    public static func / (lhs: JSONPath, rhs: Int) -> JSONPath { lhs.appending(index: rhs) }

    public var description: String {
        var out = "$"
        for c in components {
            switch c {
            case .key(let k):
                if !k.isEmpty, k.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) {
                    out += ".\(k)"
                } else {
                    out += "[\(jsonQuoted(k).replacingOccurrences(of: "\"", with: "'"))]"
                }
            case .index(let i): out += "[\(i)]"
            }
        }
        return out
    }

    public init(from decoder: any Decoder) throws {
        // Paths are written for people; reading one back is only needed by tests comparing text.
        let text = try decoder.singleValueContainer().decode(String.self)
        self.init([.key(text)])
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// One problem found in a template file.
public struct Diagnostic: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable, Codable { case error, warning }
    public var severity: Severity
    public var file: String
    public var line: Int
    public var column: Int
    public var path: JSONPath
    public var code: ErrorCode
    public var message: String

    public init(severity: Severity = .error, file: String = "", position: SourcePosition, path: JSONPath, code: ErrorCode, message: String) {
        self.severity = severity
        self.file = file
        self.line = position.line
        self.column = position.column
        self.path = path
        self.code = code
        self.message = message
    }

    /// `FILE:LINE: $.json.path: CODE: message` (warnings say so before the code).
    public var description: String {
        let sev = severity == .warning ? "warning: " : ""
        return "\(file):\(line): \(path): \(sev)\(code): \(message)"
    }
}

/// Collects diagnostics while a file is decoded, so that every problem is reported, not just the first.
public struct DiagnosticSink: Sendable {
    public private(set) var items: [Diagnostic] = []
    public var file: String
    public init(file: String) { self.file = file }

    public mutating func error(_ code: ErrorCode, _ message: String, at path: JSONPath, _ position: SourcePosition) {
        items.append(Diagnostic(severity: .error, file: file, position: position, path: path, code: code, message: message))
    }
    public mutating func warning(_ code: ErrorCode, _ message: String, at path: JSONPath, _ position: SourcePosition) {
        items.append(Diagnostic(severity: .warning, file: file, position: position, path: path, code: code, message: message))
    }
    public mutating func append(contentsOf other: [Diagnostic]) { items.append(contentsOf: other) }
    public var hasErrors: Bool { items.contains { $0.severity == .error } }
}
