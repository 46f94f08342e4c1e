import Foundation
import KilnStore
import KilnTemplates

/// The run state machine: every change of a run's `runState`/`runSubState` goes through `RunRecord.apply`,
/// so what may follow what is written once. A transition returns the new state or a typed refusal; callers
/// that race (two processes, a cancel landing while a run finishes) apply it inside a store transaction and
/// treat a refusal as "someone else got there first".
///
/// ```
///   queue ──▶ Running/Queued ──claim──▶ Running/<phase> ──finish──▶ Succeeded | PartiallySucceeded | Failed | Canceled
///                  │                         │
///                  └─cancel─▶ Canceled        └─cancel─▶ Canceling ──finish / recover──▶ Canceled
///                                             recover (owner gone) ──▶ Failed
/// ```
public enum RunTransition: Sendable, Hashable {
    /// A process takes a queued, unowned run to execute it.
    case claim(RunOwner)
    /// The executing run enters a phase (Building, Customizing, …).
    case enter(RunSubState)
    /// A cancel request: a run nobody executes yet ends Canceled at once; an executing one moves to
    /// Canceling and its executor stops the VM.
    case requestCancel(reason: String)
    /// The executor ends the run. A run that was Canceling can only end Canceled or Failed.
    case finish(RunState, message: String)
    /// The owning process is gone (crash, kill -9, reboot): Failed, or Canceled if it was canceling.
    case recover(message: String)
}

/// Why a transition does not apply to a run in its current state.
public enum RunTransitionRefusal: Error, Sendable, Hashable {
    /// The run has ended already (in this state).
    case ended(RunState)
    /// A claim of a run that is not waiting in the queue.
    case notQueued
    /// A phase change or finish of a run that no process executes.
    case notExecuting
    /// `finish` with a state a run cannot end in (Running, Canceling), or Succeeded after a cancel.
    case notFinal(RunState)
}

extension RunRecord {
    /// Applies `transition` in place, or throws why not (the record is then unchanged).
    public mutating func apply(_ transition: RunTransition, at now: Date = Date()) throws(RunTransitionRefusal) {
        guard isActive else { throw .ended(runState) }
        switch transition {
        case .claim(let owner):
            guard isWaiting else { throw .notQueued }
            self.owner = owner
            startTime = now
        case .enter(let phase):
            guard owner != nil else { throw .notExecuting }
            // A Canceling run keeps the phase it was canceled in: that is what its message reports.
            guard runState == .running else { return }
            runSubState = phase
        case .requestCancel(let reason):
            cancelRequested = true
            if owner == nil {
                end(.canceled, message: reason, at: now)
            } else {
                runState = .canceling
            }
        case .finish(let state, let text):
            guard owner != nil else { throw .notExecuting }
            guard !state.isActive else { throw .notFinal(state) }
            if runState == .canceling, state != .canceled, state != .failed { throw .notFinal(state) }
            end(state, message: text, at: now)
        case .recover(let text):
            end(runState == .canceling ? .canceled : .failed, message: text, at: now)
        }
    }

    private mutating func end(_ state: RunState, message text: String, at now: Date) {
        runState = state
        message = text
        endTime = now
    }
}

/// The template state machine: Creating while its artifacts are staged, then Succeeded or Failed; Deleting
/// (refused while a run is active: the store checks that in the same transaction) until it is removed.
public enum TemplateTransition: Sendable, Hashable {
    case staged
    case stagingFailed(code: String, message: String)
}

extension TemplateRecord {
    /// Applies `transition`; only a Creating template can finish staging.
    public mutating func apply(_ transition: TemplateTransition) throws(TemplateTransitionRefusal) {
        guard provisioningState == .creating else { throw .notCreating(provisioningState) }
        switch transition {
        case .staged:
            provisioningState = .succeeded
            provisioningErrorCode = nil
            provisioningErrorMessage = nil
        case .stagingFailed(let code, let message):
            provisioningState = .failed
            provisioningErrorCode = code
            provisioningErrorMessage = message
        }
    }
}

public enum TemplateTransitionRefusal: Error, Sendable, Hashable {
    case notCreating(ProvisioningState)
}
