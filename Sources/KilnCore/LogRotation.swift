import Foundation

/// Size-based rotation for the logs Kiln appends to itself (`<data>/logs/worker.log`): a controller that runs
/// for months starts a worker per build, and without this the file only grows.
///
/// Rotation happens before a new writer opens the file, never under one: a worker still running keeps
/// appending to the file it opened (now `worker.log.1`), so no line is lost or split.
public enum LogRotation {
    /// When `path` is at least `maxBytes`, shifts `path.1 … path.(keep-1)` up by one (dropping the oldest) and
    /// renames `path` to `path.1`. Returns whether it rotated. Errors are ignored: logging must not stop a build.
    @discardableResult
    public static func rotate(_ path: String, maxBytes: Int, keep: Int) -> Bool {
        let fm = FileManager.default
        guard keep >= 1,
            let size = (try? fm.attributesOfItem(atPath: path))?[.size] as? Int, size >= maxBytes
        else { return false }
        try? fm.removeItem(atPath: "\(path).\(keep)")
        if keep > 1 {
            for n in stride(from: keep - 1, through: 1, by: -1) where fm.fileExists(atPath: "\(path).\(n)") {
                try? fm.moveItem(atPath: "\(path).\(n)", toPath: "\(path).\(n + 1)")
            }
        }
        return rename(path, "\(path).1") == 0
    }
}
