import Foundation

/// A run's log file (`customization.log`, `validation.log`): timestamped lines with step markers, appended
/// as output arrives so that `kiln template logs --follow` can tail it while the build runs.
public final class BuildLog: @unchecked Sendable {
    public let path: String
    private let lock = NSLock()
    private let handle: FileHandle?
    private var recent: [String] = []
    /// Every line also goes here (the terminal with --follow, progress reporting).
    private let echo: (@Sendable (String) -> Void)?

    public init(path: String, echo: (@Sendable (String) -> Void)? = nil) {
        self.path = path
        self.echo = echo
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        // O_APPEND: the core and the builder both write to a run's log; every line lands at the end.
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        handle = fd >= 0 ? FileHandle(fileDescriptor: fd, closeOnDealloc: true) : nil
    }

    deinit { try? handle?.close() }

    /// Used under `lock` only (formatters are not thread-safe).
    private let stamp: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()

    /// Appends one line with a timestamp.
    public func line(_ text: String) {
        let l: String = lock.withLock {
            let l = "\(stamp.string(from: Date())) \(text)"
            handle?.write(Data((l + "\n").utf8))
            recent.append(text)
            if recent.count > 200 { recent.removeFirst(recent.count - 200) }
            return l
        }
        echo?(l)
    }

    /// A step marker: `==> [2/5] Shell "harden": start`.
    public func marker(_ text: String) { line("==> \(text)") }

    /// The last `n` lines written (without timestamps), for error messages.
    public func tail(_ n: Int) -> [String] {
        lock.withLock { Array(recent.suffix(n)) }
    }
}
