import Foundation
import KilnCore
import KilnGitOps
import KilnStore
import KilnTemplates
import Prometheus

/// The controller's Prometheus metrics.
///
/// Two kinds: what the controllers report as they work (reconciles, syncs, git errors, webhooks — counted as
/// they happen, through `ControllerObserver`), and what the store knows (templates and runs by state, the
/// queue, the phases of finished runs — read at each scrape). Builds run in detached worker processes, so run
/// phases cannot be observed in this process as they happen: each scrape reads the runs that ended since the
/// previous one and records their phase durations once. The histograms therefore cover runs that ended while
/// this process was up, which is what Prometheus expects of a histogram that starts from zero at a restart.
public final class ControllerMetrics: ControllerObserver, Sendable {
    public let registry = PrometheusCollectorRegistry()
    let core: KilnCore
    let scrapeState: ScrapeState

    static let reconcileBuckets: [Duration] = [
        .milliseconds(10), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60), .seconds(300)
    ]
    static let phaseBuckets: [Duration] = [1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200].map { .seconds($0) }
    /// Listed so that the series exist (at zero) before the first template is in that state.
    static let templateStates = ProvisioningState.allCases
    static let runStates = RunState.allCases
    public static let webhookResults = ["accepted", "rejected", "unknown"]

    /// Every series a repository has is created here, at zero, so that `rate()` and alerts work from the start.
    public init(core: KilnCore, repositories: [String], since: Date = Date()) {
        self.core = core
        self.scrapeState = ScrapeState(watermark: since)
        for repo in repositories {
            for result in ReconcileResult.allCases { _ = reconcileCounter(repo, result) }
            _ = reconcileHistogram(repo)
            _ = syncGauge(repo)
            for op in GitOperation.allCases { _ = gitErrorCounter(repo, op) }
            for result in Self.webhookResults { _ = webhookCounter(repo, result) }
        }
        for s in Self.templateStates { templateGauge(s.rawValue).set(to: 0) }
        for s in Self.runStates { runGauge(s.rawValue).set(to: 0) }
        _ = queueGauge
    }

    // MARK: Series

    func reconcileCounter(_ repo: String, _ result: ReconcileResult) -> Counter {
        registry.makeCounter(
            descriptor: .init(
                namespace: "kiln", metricName: "reconciles", unitName: "total",
                helpText: "Reconciles by repository and result (success, problems: an invalid file or a failed change, error)."),
            labels: [("repository", repo), ("result", result.rawValue)])
    }

    func reconcileHistogram(_ repo: String) -> DurationHistogram {
        registry.makeDurationHistogram(
            descriptor: .init(
                namespace: "kiln", metricName: "reconcile_duration", unitName: "seconds",
                helpText: "Time to plan and apply one reconcile (builds excluded: they run in workers)."),
            labels: [("repository", repo)], buckets: Self.reconcileBuckets)
    }

    func syncGauge(_ repo: String) -> Gauge {
        registry.makeGauge(
            descriptor: .init(
                namespace: "kiln", subsystem: "repository", metricName: "last_sync", unitName: "timestamp_seconds",
                helpText: "When the repository's remote last answered (Unix time); 0 until it has."),
            labels: [("repository", repo)])
    }

    func gitErrorCounter(_ repo: String, _ op: GitOperation) -> Counter {
        registry.makeCounter(
            descriptor: .init(
                namespace: "kiln", metricName: "git_errors", unitName: "total",
                helpText: "Failed git operations: fetch (ls-remote and fetch) and push (status, after retries)."),
            labels: [("repository", repo), ("operation", op.rawValue)])
    }

    public func webhookCounter(_ repo: String, _ result: String) -> Counter {
        registry.makeCounter(
            descriptor: .init(
                namespace: "kiln", metricName: "webhook_requests", unitName: "total",
                helpText: "Webhook deliveries by repository and result (accepted, rejected: bad or missing signature, unknown: no such repository)."),
            labels: [("repository", repo), ("result", result)])
    }

    func templateGauge(_ state: String) -> Gauge {
        registry.makeGauge(
            descriptor: .init(
                namespace: "kiln", metricName: "templates", unitName: "",
                helpText: "Image templates by provisioning state."),
            labels: [("state", state)])
    }

    func runGauge(_ state: String) -> Gauge {
        registry.makeGauge(
            descriptor: .init(
                namespace: "kiln", metricName: "runs", unitName: "",
                helpText: "Template runs kept in the store, by run state."),
            labels: [("state", state)])
    }

    var queueGauge: Gauge {
        registry.makeGauge(
            descriptor: .init(
                namespace: "kiln", subsystem: "run", metricName: "queue_depth", unitName: "",
                helpText: "Runs queued and not yet claimed by a worker."))
    }

    func phaseHistogram(_ phase: String) -> DurationHistogram {
        registry.makeDurationHistogram(
            descriptor: .init(
                namespace: "kiln", subsystem: "run", metricName: "phase_duration", unitName: "seconds",
                helpText: "Duration of each build phase of the runs that ended while this process ran."),
            labels: [("phase", phase)], buckets: Self.phaseBuckets)
    }

    func runHistogram(_ state: String) -> DurationHistogram {
        registry.makeDurationHistogram(
            descriptor: .init(
                namespace: "kiln", subsystem: "run", metricName: "duration", unitName: "seconds",
                helpText: "Whole-run duration (claim to end) of the runs that ended while this process ran, by final state."),
            labels: [("state", state)], buckets: Self.phaseBuckets)
    }

    // MARK: ControllerObserver

    public func synced(repository: String, at date: Date) {
        syncGauge(repository).set(to: date.timeIntervalSince1970)
    }

    public func reconciled(repository: String, duration: Duration, result: ReconcileResult) {
        reconcileCounter(repository, result).increment()
        reconcileHistogram(repository).record(duration)
    }

    public func gitFailed(repository: String, operation: GitOperation) {
        gitErrorCounter(repository, operation).increment()
    }

    // MARK: Scrape

    /// The exposition text: the store's figures read now, then everything rendered.
    public func scrape() async throws(CoreError) -> String {
        try await scrapeState.refresh(self)
        return registry.emitToString()
    }
}

/// The scrape-time part. Each finished run is recorded once, even with scrapes overlapping (`refresh` awaits
/// the store twice, so another scrape can run on this actor meanwhile): the decision is made after the reads,
/// against the current state, in one synchronous stretch.
actor ScrapeState {
    /// Runs that ended before this predate the process: never recorded.
    let floor: Date
    /// The latest end time recorded.
    var watermark: Date
    /// Runs recorded whose end lies within `overlap` of the watermark, by end time. Each query reaches back
    /// `overlap` before the watermark, so that millisecond rounding of stored dates (and a run committed a moment
    /// after a later one) cannot make a run be missed; this set keeps those re-read runs from counting twice.
    var recent: [String: Date] = [:]
    static let overlap: TimeInterval = 10

    init(watermark: Date) {
        self.floor = watermark
        self.watermark = watermark
    }

    func refresh(_ m: ControllerMetrics) async throws(CoreError) {
        let counts = try await m.core.counts()
        // Every state is an enum case, so the full set of series is known and each is set on every scrape.
        for s in ControllerMetrics.templateStates { m.templateGauge(s.rawValue).set(to: Double(counts.templatesByState[s] ?? 0)) }
        for s in ControllerMetrics.runStates { m.runGauge(s.rawValue).set(to: Double(counts.runsByState[s] ?? 0)) }
        m.queueGauge.set(to: Double(counts.queued))

        let ended = try await m.core.runsEnded(since: max(floor, watermark.addingTimeInterval(-Self.overlap)))
        // From here on nothing awaits: the state read is the state written.
        let horizon = watermark.addingTimeInterval(-Self.overlap)
        for run in ended {
            guard let end = run.endTime, end >= floor, end >= horizon, recent[run.id] == nil else { continue }
            for (phase, seconds) in run.phaseSeconds where seconds >= 0 {
                m.phaseHistogram(phase.rawValue).record(.milliseconds(Int64(seconds * 1000)))
            }
            if let start = run.startTime, end >= start {
                m.runHistogram(run.runState.rawValue).record(.milliseconds(Int64(end.timeIntervalSince(start) * 1000)))
            }
            recent[run.id] = end
            watermark = max(watermark, end)
        }
        let keep = watermark.addingTimeInterval(-Self.overlap)
        recent = recent.filter { $0.value >= keep }
    }
}
