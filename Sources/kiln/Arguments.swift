// Typed command-line values: durations, commit authors.
import ArgumentParser
import Foundation
import KilnGit
import KilnServer
import KilnSystem

/// `30s`, `5m`, `1h`, `250ms`, `90` (seconds), as `Duration(text:)` reads them.
extension Duration: @retroactive ExpressibleByArgument {
    public init?(argument: String) {
        guard let d = Duration(text: argument) else { return nil }
        self = d
    }

    /// As a flag takes it: `20s`, `5m`, `1h`, `250ms`.
    public var defaultValueDescription: String {
        let ms = components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
        if ms > 0, ms % 3_600_000 == 0 { return "\(ms / 3_600_000)h" }
        if ms > 0, ms % 60_000 == 0 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }

    /// A flag's duration of at least `minimum`; else `hint` (what to give) as the error.
    static func parseArgument(_ text: String, atLeast minimum: Duration, hint: String) throws -> Duration {
        guard let d = Duration(text: text), d >= minimum else { throw ValidationError(hint) }
        return d
    }
}

/// The author of status commits and notes: `Name <email>`.
struct Author: ExpressibleByArgument, Sendable, Hashable, CustomStringConvertible {
    var name: String
    var email: String

    /// The author without `--author` or a configured one.
    static let kiln = Author(name: "Kiln", email: "kiln@localhost")

    init(name: String, email: String) {
        self.name = name
        self.email = email
    }

    init(_ signature: GitSignature) {
        self.init(name: signature.name, email: signature.email)
    }

    /// `Name <email>`: a name, and an email address with an `@` (or kiln@localhost).
    init(parsing text: String) throws {
        guard let lt = text.firstIndex(of: "<"), text.hasSuffix(">") else { throw ValidationError(Self.hint) }
        self.init(
            name: text[..<lt].trimmingCharacters(in: .whitespaces),
            email: String(text[text.index(after: lt)..<text.index(before: text.endIndex)]))
        guard isValid else { throw ValidationError(Self.hint) }
    }

    init?(argument: String) {
        guard let a = try? Author(parsing: argument) else { return nil }
        self = a
    }

    static let hint = "write it as 'Name <email>'"

    var isValid: Bool { !name.isEmpty && (email.contains("@") || email == "kiln@localhost") }

    var description: String { "\(name) <\(email)>" }

    /// The git signature; an author not written `Name <email>` (a configured one without a name) is refused as
    /// `--author` refuses it.
    func signature() throws -> GitSignature {
        guard isValid else { throw ValidationError("--author \(self): \(Self.hint)") }
        return GitSignature(name: name, email: email)
    }
}
