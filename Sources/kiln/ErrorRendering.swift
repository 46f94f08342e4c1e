import KilnCore

/// A core error as the CLI prints it: `CODE: message`, then the remedy in the CLI's own commands.
func render(_ e: CoreError) -> String {
    var text = "\(e.code): \(e)"
    if let remedy = e.remedy { text += remedy.cliHint }
    return text
}

extension Remedy {
    /// The remedy in `kiln` commands, starting with its separator ("; " or a new line).
    var cliHint: String {
        switch self {
        case .listTemplates: return "; `kiln template list` shows them"
        case .cancelOrWait(let t): return "; cancel it (kiln template cancel \(t)) or wait for it to finish"
        case .delete(let t): return "; delete it first: kiln template delete \(t)"
        case .recreate(let t): return "; delete it (kiln template delete \(t)) and create it again"
        case .giveFullId(let ids): return "; give the full id:\n" + ids.map { "  \($0)" }.joined(separator: "\n")
        }
    }
}
