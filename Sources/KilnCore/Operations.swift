import Foundation
import KilnStore
import KilnTemplates

/// The REST API's long-running operations, through the core (the only door to the store).
extension KilnCore {
    public func startOperation(_ operation: OperationRecord) async throws(CoreError) {
        do { try await store.insertOperation(operation) } catch { throw .from(error) }
    }

    /// The operation with its status brought up to date, or nil when there is none with this id.
    ///
    /// A `run` operation lasts as long as the run: Succeeded when the run succeeded (or partly), Failed with the
    /// run's message, Canceled when it was canceled. A `cancel` operation succeeds when the run has ended, however
    /// it ended. Once seen ended, the answer is written down and no longer depends on the run.
    public func operation(id: String) async throws(CoreError) -> OperationRecord? {
        do {
            guard let op = try await store.operation(id: id) else { return nil }
            guard !op.status.isTerminal, let runId = op.runId else { return op }
            guard let run = try await store.run(id: runId) else {
                return try await store.finishOperation(id: op.id, status: .failed, errorCode: "ResourceNotFound", errorMessage: "run \(runId) no longer exists")
            }
            guard !run.isActive else { return op }
            let (status, code, message) = Self.outcome(of: op.kind, run: run)
            return try await store.finishOperation(id: op.id, status: status, errorCode: code, errorMessage: message)
        } catch {
            throw .from(error)
        }
    }

    /// Ends an operation that is not bound to a run (a delete that finished or failed).
    public func finishOperation(id: String, status: OperationRecord.Status, error: CoreError? = nil) async throws(CoreError) {
        do { try await store.finishOperation(id: id, status: status, errorCode: error?.code, errorMessage: error?.message) } catch { throw .from(error) }
    }

    /// How a run's end ends an operation on it.
    static func outcome(of kind: OperationRecord.Kind, run: RunRecord) -> (OperationRecord.Status, String?, String?) {
        if kind == .cancel { return (.succeeded, nil, nil) }
        switch run.runState {
        case .succeeded, .partiallySucceeded: return (.succeeded, nil, nil)
        case .canceled: return (.canceled, "OperationCanceled", run.message ?? "the run was canceled")
        default: return (.failed, "BuildFailed", run.message ?? "the run failed")
        }
    }
}
