import Foundation
@testable import KilnCore
import KilnStore
import KilnTemplates
import Testing

/// The run state machine, transition by transition: what each one does from each starting state.
@Suite struct RunLifecycleTests {
    enum Start: String, CaseIterable, CustomTestStringConvertible {
        case queued, executing, canceling, succeeded, failed, canceled
        var testDescription: String { rawValue }
    }

    static let owner = RunOwner(pid: 42, startTicks: 7, bootId: "boot")
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func run(_ start: Start) -> RunRecord {
        var r = RunRecord(id: "r", templateId: "/t", queuedAt: now.addingTimeInterval(-60), timeoutMinutes: 60, workDirectory: "/w", logDirectory: "/l")
        switch start {
        case .queued: break
        case .executing: r.owner = owner; r.runSubState = .customizing
        case .canceling: r.owner = owner; r.runSubState = .customizing; r.runState = .canceling; r.cancelRequested = true
        case .succeeded: r.owner = owner; r.runState = .succeeded; r.endTime = now
        case .failed: r.owner = owner; r.runState = .failed; r.endTime = now
        case .canceled: r.runState = .canceled; r.endTime = now
        }
        return r
    }

    /// (start, transition, the state after — or the refusal).
    static let table: [(Start, RunTransition, Result<RunState, RunTransitionRefusal>)] = [
        (.queued, .claim(owner), .success(.running)),
        (.executing, .claim(owner), .failure(.notQueued)),
        (.succeeded, .claim(owner), .failure(.ended(.succeeded))),
        (.queued, .enter(.building), .failure(.notExecuting)),
        (.executing, .enter(.validating), .success(.running)),
        (.canceling, .enter(.validating), .success(.canceling)),
        (.failed, .enter(.validating), .failure(.ended(.failed))),
        (.queued, .requestCancel(reason: "r"), .success(.canceled)),
        (.executing, .requestCancel(reason: "r"), .success(.canceling)),
        (.canceling, .requestCancel(reason: "r"), .success(.canceling)),
        (.canceled, .requestCancel(reason: "r"), .failure(.ended(.canceled))),
        (.executing, .finish(.succeeded, message: "m"), .success(.succeeded)),
        (.executing, .finish(.partiallySucceeded, message: "m"), .success(.partiallySucceeded)),
        (.executing, .finish(.running, message: "m"), .failure(.notFinal(.running))),
        (.canceling, .finish(.succeeded, message: "m"), .failure(.notFinal(.succeeded))),
        (.canceling, .finish(.canceled, message: "m"), .success(.canceled)),
        (.canceling, .finish(.failed, message: "m"), .success(.failed)),
        (.queued, .finish(.failed, message: "m"), .failure(.notExecuting)),
        (.succeeded, .finish(.failed, message: "m"), .failure(.ended(.succeeded))),
        (.executing, .recover(message: "gone"), .success(.failed)),
        (.canceling, .recover(message: "gone"), .success(.canceled)),
        (.failed, .recover(message: "gone"), .failure(.ended(.failed)))
    ]

    @Test(arguments: table.indices)
    func transition(_ i: Int) {
        let (start, transition, expected) = Self.table[i]
        var r = Self.run(start)
        let before = r
        do {
            try r.apply(transition, at: Self.now)
            guard case .success(let state) = expected else {
                Issue.record("\(start) + \(transition) applied (now \(r.runState)) but should be refused with \(expected)")
                return
            }
            #expect(r.runState == state, "\(start) + \(transition)")
            if !state.isActive {
                #expect(r.endTime == Self.now, "an ended run has its end time")
                #expect(r.message != nil)
            }
        } catch {
            #expect(expected == .failure(error), "\(start) + \(transition)")
            #expect(r == before, "a refused transition changes nothing")
        }
    }

    @Test func claimSetsOwnerAndStartAndPhasesMove() throws {
        var r = Self.run(.queued)
        try r.apply(.claim(Self.owner), at: Self.now)
        #expect(r.owner == Self.owner && r.startTime == Self.now && !r.isWaiting)
        try r.apply(.enter(.building))
        #expect(r.runSubState == .building)
        try r.apply(.requestCancel(reason: "x"))
        #expect(r.cancelRequested && r.runState == .canceling)
        try r.apply(.enter(.distributing))
        #expect(r.runSubState == .building, "a canceling run keeps the phase it was canceled in")
    }

    @Test func aQueuedRunCanceledEndsWithTheReason() throws {
        var r = Self.run(.queued)
        try r.apply(.requestCancel(reason: "kiln received SIGTERM"), at: Self.now)
        #expect(r.runState == .canceled && r.message == "kiln received SIGTERM" && r.endTime == Self.now)
    }

    @Test func templateTransitions() throws {
        var t = TemplateRecord(
            id: "/t", subscription: "s", resourceGroup: "g", name: "t", location: "l", document: "{}", contentHash: "h",
            sourceFile: nil, sourceCommit: nil, provisioningState: .creating, stagingDirectory: "/s",
            stagingResourceGroup: "/rg", createdAt: Self.now)
        var failed = t
        try failed.apply(.stagingFailed(code: "BadChecksum", message: "m"))
        #expect(failed.provisioningState == .failed && failed.provisioningErrorCode == "BadChecksum")
        try t.apply(.staged)
        #expect(t.provisioningState == .succeeded && t.provisioningErrorCode == nil)
        #expect(throws: TemplateTransitionRefusal.notCreating(.succeeded)) { try t.apply(.staged) }
    }

    @Test func runStateSets() {
        #expect(RunState.active == [.running, .canceling])
        #expect(Set(RunState.final) == [.succeeded, .partiallySucceeded, .failed, .canceled])
    }
}
