import Foundation
import KilnStore
import KilnTemplates

/// Why a core operation failed, with the ARM error code the REST API reports for it.
public enum CoreError: Error, Sendable, CustomStringConvertible {
    /// No template (or run) with that id or name.
    case notFound(String)
    /// PUT on an id that exists: templates are immutable.
    case conflict(String)
    /// Refused in the resource's current state (delete while running, run while running, …).
    case operationNotAllowed(String)
    /// A request that can never succeed as written (a patch that changes a fixed property, …).
    case invalidParameter(path: String, message: String)
    /// A name that matches templates in several resource groups.
    case ambiguous(name: String, ids: [String])
    case store(StoreError)
    case io(String)

    /// The ARM error code.
    public var code: String {
        switch self {
        case .notFound: return "ResourceNotFound"
        case .conflict: return "Conflict"
        case .operationNotAllowed: return "OperationNotAllowed"
        case .invalidParameter: return "InvalidParameter"
        case .ambiguous: return "AmbiguousName"
        case .store, .io: return "InternalServerError"
        }
    }

    public var description: String {
        switch self {
        case .notFound(let m): return m
        case .conflict(let m): return m
        case .operationNotAllowed(let m): return m
        case .invalidParameter(let p, let m): return "\(p): \(m)"
        case .ambiguous(let name, let ids):
            return "the name \(name) matches \(ids.count) templates; give the full id:\n" + ids.map { "  \($0)" }.joined(separator: "\n")
        case .store(let e): return e.description
        case .io(let m): return m
        }
    }

    static func from(_ e: StoreError) -> CoreError {
        switch e {
        case .notFound(let m): return .notFound("\(m) not found")
        case .refused(let m): return .operationNotAllowed(m)
        default: return .store(e)
        }
    }
}
