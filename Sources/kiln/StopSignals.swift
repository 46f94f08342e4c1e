import Foundation
import KilnCore

/// SIGTERM/SIGINT for a command that executes runs in this process (`template run --wait`, `reconcile --once`,
/// `template worker`): every run it executes is canceled (VM stopped, run Canceled with the signal as its reason),
/// no new run is started, and the command then ends as it does after a cancel. A second signal, or runs that are
/// still going after `grace`, exit at once; crash recovery then cleans up as after a kill.
enum StopSignals {
    /// Keep the returned sources alive for as long as the command runs.
    static func cancelRunsOnSignal(grace: Duration = .seconds(60)) -> [any DispatchSourceSignal] {
        let received = ManagedAtomicFlag()
        return [SIGTERM, SIGINT].map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig)
            source.setEventHandler {
                let name = sig == SIGTERM ? "SIGTERM" : "SIGINT"
                if received.testAndSet() {
                    printError("kiln: \(name) again; exiting now")
                    exit(128 + sig)
                }
                let ids = ExecutingRuns.shared.stopAll(reason: "kiln (process \(getpid())) received \(name)")
                if ids.isEmpty { exit(128 + sig) }
                printError("kiln: \(name): canceling run\(ids.count == 1 ? "" : "s") \(ids.joined(separator: ", ")) (stopping the build VM)")
                Task.detached {
                    if await !ExecutingRuns.shared.waitUntilIdle(timeout: grace) {
                        printError("kiln: the runs did not stop within \(grace); exiting")
                        exit(128 + sig)
                    }
                }
            }
            source.resume()
            return source
        }
    }
}

/// Set once, read from the signal handler's queue.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false
    /// Sets the flag; whether it was set already.
    func testAndSet() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let was = set
        set = true
        return was
    }
}
