import Foundation
import KilnStore
import KilnTemplates

/// Why a core operation failed: an ARM error code, a message that says what is wrong (no command lines: the
/// same error reaches the CLI and the REST API), and a structured remedy each front end words its own way.
public struct CoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The ARM error code the REST API reports.
    public enum Kind: String, Sendable, Hashable {
        /// No template (or run) with that id or name.
        case notFound = "ResourceNotFound"
        /// PUT on an id that exists: templates are immutable.
        case conflict = "Conflict"
        /// Refused in the resource's current state (delete while running, run while running, …).
        case operationNotAllowed = "OperationNotAllowed"
        /// A request that can never succeed as written (a patch that changes a fixed property, …).
        case invalidParameter = "InvalidParameter"
        /// A name that matches templates in several resource groups.
        case ambiguous = "AmbiguousName"
        /// The store or the file system failed.
        case internalError = "InternalServerError"
    }

    public var kind: Kind
    public var message: String
    /// The JSON path an `invalidParameter` is about (ARM's `target`).
    public var target: String?
    public var remedy: Remedy?

    public init(_ kind: Kind, _ message: String, target: String? = nil, remedy: Remedy? = nil) {
        self.kind = kind
        self.message = message
        self.target = target
        self.remedy = remedy
    }

    public var code: String { kind.rawValue }

    public var description: String { target.map { "\($0): \(message)" } ?? message }

    public static func notFound(_ m: String, remedy: Remedy? = nil) -> CoreError { CoreError(.notFound, m, remedy: remedy) }
    public static func conflict(_ m: String, remedy: Remedy? = nil) -> CoreError { CoreError(.conflict, m, remedy: remedy) }
    public static func operationNotAllowed(_ m: String, remedy: Remedy? = nil) -> CoreError { CoreError(.operationNotAllowed, m, remedy: remedy) }
    public static func invalidParameter(path: String, message: String) -> CoreError { CoreError(.invalidParameter, message, target: path) }
    public static func ambiguous(name: String, ids: [String]) -> CoreError {
        CoreError(.ambiguous, "the name \(name) matches \(ids.count) templates", remedy: .giveFullId(candidates: ids))
    }
    public static func store(_ e: StoreError) -> CoreError { CoreError(.internalError, e.description) }
    public static func io(_ m: String) -> CoreError { CoreError(.internalError, m) }

    static func from(_ e: StoreError) -> CoreError {
        switch e {
        case .notFound(let m): return .notFound("\(m) not found")
        case .refused(let r):
            switch r {
            case .runActive(let t, _, _, _): return .operationNotAllowed(r.description, remedy: .cancelOrWait(template: t))
            case .templateNotRunnable(let t, _): return .operationNotAllowed(r.description, remedy: .recreate(template: t))
            }
        default: return .store(e)
        }
    }
}

/// What the user can do about an error, for the front end to word: the CLI names its commands, the REST API
/// its operations.
public enum Remedy: Sendable, Hashable {
    /// List the templates to find the right name.
    case listTemplates
    /// Cancel the template's run in progress, or wait for it to finish.
    case cancelOrWait(template: String)
    /// Delete the template (and create it again).
    case delete(template: String)
    /// Delete the template and create it again with its problem fixed.
    case recreate(template: String)
    /// Name the template by its full resource id: one of these.
    case giveFullId(candidates: [String])
}
