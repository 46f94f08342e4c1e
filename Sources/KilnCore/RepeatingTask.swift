/// Work the controller does on a schedule beside its repositories (polling triggers, refreshing the
/// catalog): the body runs, then waits `interval`, until `stop()`. A body is never run twice at once, and a
/// stop is seen within a second whatever the interval.
public actor RepeatingTask {
    let interval: Duration
    let body: @Sendable () async -> Void
    var stopping = false

    public init(interval: Duration, body: @escaping @Sendable () async -> Void) {
        self.interval = interval
        self.body = body
    }

    public func run() async {
        while !stopping {
            await body()
            let next = ContinuousClock.now + interval
            while !stopping, ContinuousClock.now < next { try? await Task.sleep(for: min(.seconds(1), next - ContinuousClock.now)) }
        }
    }

    public func stop() { stopping = true }
}
