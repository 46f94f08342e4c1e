import Foundation

/// A serial executor with a thread of its own, for an actor whose methods block.
///
/// libgit2's network calls (ls-remote, fetch, push) block the calling thread for as long as the remote takes —
/// a stalled SSH handshake can take minutes, and libgit2 1.5 has no connect timeout. On Swift's cooperative
/// pool (one thread per core: two here) two such calls would stall every other task in the process: the other
/// repositories' reconciles, the webhook handlers, the metrics endpoint. Each `GitRepository` therefore runs
/// on its own thread: a slow remote holds back only its own repository.
final class ThreadExecutor: SerialExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopped = false

    init(name: String) {
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.stackSize = 4 << 20
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    /// Lets the thread end once the jobs already queued have run. The thread holds the executor until then.
    func shutdown() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedSerialExecutor()) }
        }
    }
}
