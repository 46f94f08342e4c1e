/// Branch names as git allows them (`git check-ref-format --branch`): checked where a name enters Kiln (flags,
/// the configuration), so that a bad one is an error naming the option rather than a failed push later.
public enum BranchName {
    public static func isValid(_ b: String) -> Bool {
        !b.isEmpty && !b.hasPrefix("-") && !b.hasPrefix("/") && !b.hasSuffix("/") && !b.hasSuffix(".lock") && !b.hasSuffix(".")
            && !b.contains("..") && !b.contains("//") && !b.contains("@{") && b != "@" && !b.contains("/.") && !b.hasPrefix(".")
            && b.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F && !"~^:?*[\\".unicodeScalars.contains($0) }
    }
}
