import Foundation
import Hummingbird
import KilnCore
import KilnTemplates

/// An error answer of the REST API: ARM's envelope `{"error": {code, message, target, details[]}}` (common-types
/// v5 `ErrorResponse`) with its HTTP status. The SDK turns 401/404/409 into its own exception types and the rest
/// into `HttpResponseError` with this body as its model.
public struct ARMError: Error, Sendable, Hashable, Encodable {
    public struct Detail: Sendable, Hashable, Encodable {
        public var code: String
        public var message: String
        public var target: String?
        /// Where in the submitted body, when known (`additionalInfo` of type `Position`).
        public var additionalInfo: [AdditionalInfo]?
    }
    public struct AdditionalInfo: Sendable, Hashable, Encodable {
        public struct Position: Sendable, Hashable, Encodable {
            public var line: Int
            public var column: Int
        }
        public var type = "Position"
        public var info: Position
    }

    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var target: String?
    public var details: [Detail]

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, target: String? = nil, details: [Detail] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details
    }

    enum Keys: String, CodingKey { case error }
    enum BodyKeys: String, CodingKey { case code, message, target, details }

    public func encode(to encoder: any Encoder) throws {
        var outer = encoder.container(keyedBy: Keys.self)
        var c = outer.nestedContainer(keyedBy: BodyKeys.self, forKey: .error)
        try c.encode(code, forKey: .code)
        try c.encode(message, forKey: .message)
        try c.encodeIfPresent(target, forKey: .target)
        try c.encode(details, forKey: .details)
    }
}

extension ARMError {
    public static func resourceNotFound(_ type: String, _ id: String) -> ARMError {
        ARMError(.notFound, "ResourceNotFound", "The Resource '\(type)' under '\(id)' was not found.", target: id)
    }

    public static func noSuchPath(_ method: String, _ path: String) -> ARMError {
        ARMError(.notFound, "NotFound", "No HTTP resource was found that matches the request \(method) \(path.prefix(200)).")
    }

    public static func invalidName(parameter: String, value: String, rule: String) -> ARMError {
        ARMError(.badRequest, "InvalidParameter", "The \(parameter) '\(value)' is invalid: it must match \(rule).", target: parameter)
    }

    public static func missingAPIVersion() -> ARMError {
        ARMError(
            .badRequest, "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests. The supported api-versions are '\(APIVersionGate.supportedList)'.")
    }

    public static func invalidAPIVersion(_ text: String) -> ARMError {
        ARMError(
            .badRequest, "InvalidApiVersionParameter",
            "The api-version '\(text.prefix(40))' is invalid. The supported versions are '\(APIVersionGate.supportedList)'.")
    }

    public static func unsupportedAPIVersion(_ version: APIVersion) -> ARMError {
        ARMError(
            .badRequest, "NoRegisteredProviderFound",
            "No registered resource provider found for API version '\(version)' and type 'imageTemplates'. The supported api-versions are '\(APIVersionGate.supportedList)'."
        )
    }

    public static func notJSON(_ reason: String) -> ARMError {
        ARMError(.badRequest, "InvalidRequestContent", "The request content was invalid and could not be deserialized: \(reason)")
    }

    public static func unsupportedMediaType(_ type: String?) -> ARMError {
        ARMError(
            .unsupportedMediaType, "UnsupportedMediaType",
            "The content media type '\(type?.prefix(100) ?? "")' is not supported. Only 'application/json' is supported.")
    }

    public static func tooLarge(limit: Int) -> ARMError {
        ARMError(.contentTooLarge, "RequestEntityTooLarge", "The request content is larger than \(limit / (1 << 20)) MiB.")
    }

    public static func methodNotAllowed(_ method: String) -> ARMError {
        ARMError(.methodNotAllowed, "MethodNotAllowed", "The requested resource does not support http method '\(method)'.")
    }

    /// 401: no token, or one Kiln does not know. Never says which.
    public static func authenticationFailed(_ why: String) -> ARMError {
        ARMError(.unauthorized, "AuthenticationFailed", why)
    }

    /// 403: a known token outside its scope or role.
    public static func authorizationFailed(client: String, action: String, scope: String) -> ARMError {
        ARMError(
            .forbidden, "AuthorizationFailed",
            "The client '\(client)' does not have authorization to perform action '\(action)' over scope '\(scope)' or the scope is invalid.")
    }

    /// A template body that does not validate: AIB's `ValidationFailed`, each problem a detail with its AIB code,
    /// JSON path and line.
    public static func validationFailed(_ diagnostics: [Diagnostic]) -> ARMError {
        let errors = diagnostics.filter { $0.severity == .error }
        let details = errors.map { d in
            Detail(
                code: d.code.rawValue, message: "\(d.path) (line \(d.line)): \(d.message)", target: d.path.description,
                additionalInfo: d.line > 0 ? [AdditionalInfo(info: .init(line: d.line, column: d.column))] : nil)
        }
        let first = errors.first.map { "'\($0.path)' (line \($0.line)): \($0.code): \($0.message)" } ?? "the template is invalid"
        let more = errors.count > 1 ? " (and \(errors.count - 1) more; see details)" : ""
        return ARMError(.badRequest, "ValidationFailed", "Validation failed: \(first)\(more)", target: errors.first?.path.description, details: details)
    }

    /// A core error, with the status ARM gives its code.
    public static func core(_ e: CoreError) -> ARMError {
        let status: HTTPResponse.Status
        switch e.kind {
        case .notFound: status = .notFound
        case .conflict, .operationNotAllowed: status = .conflict
        case .invalidParameter, .ambiguous: status = .badRequest
        case .internalError: status = .internalServerError
        }
        let message = e.kind == .internalError ? "Internal error: \(e.message)" : e.message
        return ARMError(status, e.code, message, target: e.target)
    }
}
