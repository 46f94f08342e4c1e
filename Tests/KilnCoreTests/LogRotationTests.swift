import Foundation
import KilnCore
import Testing

@Suite struct LogRotationTests {
    @Test func rotatesAtTheLimitAndKeepsTheNewest() throws {
        let dir = NSTemporaryDirectory() + "kiln-logrot-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/worker.log"
        func read(_ p: String) -> String? { try? String(contentsOfFile: p, encoding: .utf8) }

        #expect(!LogRotation.rotate(log, maxBytes: 10, keep: 2), "no file, nothing to rotate")
        try "small\n".write(toFile: log, atomically: true, encoding: .utf8)
        #expect(!LogRotation.rotate(log, maxBytes: 10, keep: 2))
        #expect(read(log) == "small\n")

        for generation in 1...4 {
            try "generation \(generation)\n".write(toFile: log, atomically: true, encoding: .utf8)
            #expect(LogRotation.rotate(log, maxBytes: 10, keep: 2))
            #expect(!FileManager.default.fileExists(atPath: log))
        }
        #expect(read(log + ".1") == "generation 4\n")
        #expect(read(log + ".2") == "generation 3\n")
        #expect(!FileManager.default.fileExists(atPath: log + ".3"))
    }

    /// A writer that opened the file before the rotation keeps writing to it under its new name.
    @Test func anOpenWriterFollowsTheRenamedFile() throws {
        let dir = NSTemporaryDirectory() + "kiln-logrot-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/worker.log"
        try String(repeating: "x", count: 100).write(toFile: log, atomically: true, encoding: .utf8)
        let fd = open(log, O_WRONLY | O_APPEND)
        #expect(fd >= 0)
        #expect(LogRotation.rotate(log, maxBytes: 50, keep: 3))
        _ = "tail\n".withCString { write(fd, $0, 5) }
        close(fd)
        #expect(try String(contentsOfFile: log + ".1", encoding: .utf8).hasSuffix("xtail\n"))
    }
}
